"""A headless Chromium driven over the DevTools protocol: set a cookie, load a page, read its DOM, screenshot.

Uses the Debian ``chromium`` binary (Playwright's browser download does not work here) and the
``websockets`` client; no other driver is needed.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from procs import Proc

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class Browser:
    """One headless Chromium process and one page, closed by :meth:`close` (or ``with``)."""

    def __init__(self, binary: str | None = None, window: tuple[int, int] = (1300, 1600)):
        from websockets.sync.client import connect

        self.profile = Path(tempfile.mkdtemp(prefix="ragtrail-chromium-"))
        # Its own process group (with its zygote, renderers and crash handler), stopped by its handle.
        self.proc = Proc(
            [binary or chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={window[0]},{window[1]}", "about:blank"], name="chromium")
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or not self.proc.running:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=10) as resp:
            ws_url = json.loads(resp.read())["webSocketDebuggerUrl"]
        self.ws = connect(ws_url, max_size=None, open_timeout=10)
        self._ids = itertools.count(1)
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Network.enable", session=True)

    def send(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, event: dict) -> None:
        if event.get("method") == "Page.loadEventFired":
            self._loaded = True
        if event.get("method") == "Network.responseReceived" and event["params"].get("type") == "Document":
            self.status = event["params"]["response"]["status"]

    def set_cookie(self, url: str, name: str, value: str) -> None:
        self.send("Network.setCookie", session=True, url=url, name=name, value=value)

    def load(self, url: str, timeout: float = 60) -> int:
        """Navigate and wait for the load event; returns the document's HTTP status."""
        self._loaded, self.status = False, None
        self.send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + timeout
        while not self._loaded:
            self._event(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.1))))
        return self.status

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # already gone
            pass
        self.proc.stop(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
