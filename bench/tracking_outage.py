"""How long does a task spend on MLflow when MLflow is down? (the per-task budget, measured)

Three outages, each against one tracked task's lifecycle (``TaskRun`` start + end) under the default
policy (10 s per attempt, 4 retries from 0.5 s, 30 s budget), lenient mode:

- ``refused``: nothing listens on the port (a stopped server) — fails fast, retries back off;
- ``blackhole``: the port accepts and never answers (a hung server) — every attempt runs into its timeout;
- ``dies_mid_task``: a real ``mlflow server`` is up at start and stopped before the task ends.

Run: ``.venv/bin/python bench/tracking_outage.py`` (writes ``bench/results/tracking_outage.json``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("RAGTRAIL_HOME", tempfile.mkdtemp(prefix="ragtrail-bench-"))

from servers import free_port, mlflow_server  # noqa: E402

from ragtrail.trail.task_run import TaskRun  # noqa: E402


def lifecycle(uri: str, before_end=None) -> dict:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    t0 = time.perf_counter()
    run = TaskRun(dag_id="bench", run_id=f"r-{uuid.uuid4()}", task_id="embed", product="bench", version="v1")
    run.start()
    started = time.perf_counter() - t0
    if before_end:
        before_end()
    t1 = time.perf_counter()
    run.recorder.metric(embedding_count=1)
    run.end("FINISHED")
    ended = time.perf_counter() - t1
    return {"start_s": round(started, 2), "end_s": round(ended, 2), "total_s": round(started + ended, 2),
            "attempts": run.client.guard.attempts, "tracked": run.mlflow_run_id is not None,
            "budget_spent_s": round(run.client.guard.spent_s, 2), "error": (run.tracking_error or "")[:160]}


def blackhole() -> tuple[str, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held = []
    threading.Thread(target=lambda: [held.append(sock.accept()) for _ in range(64)], daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock


def main() -> None:
    results = {"refused": lifecycle(f"http://127.0.0.1:{free_port()}")}
    uri, sock = blackhole()
    results["blackhole"] = lifecycle(uri)
    sock.close()
    server = mlflow_server(Path(tempfile.mkdtemp()), free_port()).start()
    results["dies_mid_task"] = lifecycle(server.url, before_end=server.stop)
    results["healthy_local_store"] = lifecycle(f"sqlite:///{tempfile.mkdtemp()}/mlflow.db")
    out = REPO / "bench" / "results" / "tracking_outage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
