"""Real servers on loopback for tests: an MLflow tracking server and moto's S3, on free ports, each a
:class:`procs.Proc` (own process group, stopped by its handle)."""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from procs import Proc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: Proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running:
            raise RuntimeError(f"{proc.cmd[:3]} exited with {proc.exit_code()}: {proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200 and proc.listens_on(urllib.parse.urlsplit(url).port):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout} s: {proc.tail()}")


class Server:
    """A server process that can be started, stopped and started again (each start is a new :class:`Proc`)."""

    def __init__(self, cmd: list[str], health_url: str, log: Path, env: dict | None = None):
        self.cmd, self.health_url, self.log, self.env = cmd, health_url, log, env
        self.proc: Proc | None = None

    def start(self) -> Server:
        self.proc = Proc(self.cmd, log=self.log, env={**os.environ, **(self.env or {})})
        try:
            wait_http(self.health_url, self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.proc = None


def mlflow_server(tmp: Path, port: int | None = None, env: dict | None = None) -> Server:
    """``mlflow server`` with a SQLite backend and local artifacts in ``tmp`` (``env``: extra variables)."""
    port = port or free_port()
    (tmp / "artifacts").mkdir(parents=True, exist_ok=True)
    server = Server([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                     "--default-artifact-root", str(tmp / "artifacts"),
                     # proxied (mlflow-artifacts:/) uploads default to ./mlartifacts of the cwd: keep them in tmp
                     "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1",
                     "--port", str(port), "--workers", "1"],
                    f"http://127.0.0.1:{port}/health", tmp / "mlflow-server.log",
                    env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})
    server.url = f"http://127.0.0.1:{port}"
    return server


def moto_server(tmp: Path) -> Server:
    port = free_port()
    server = Server([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                    f"http://127.0.0.1:{port}/moto-api/", tmp / "moto.log")
    server.url = f"http://127.0.0.1:{port}"
    return server
