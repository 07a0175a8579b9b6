"""The "MLflow run" buttons of a task that opened no run: no lookup of an XCom that was never pushed.

Airflow computes an operator's links in the task's process when it ends, in every state. A tracked task
skipped before its run opened (``dedupe`` and ``index`` behind a failed ``ingest``) asked the execution API
for ``mlflow_run``; the API client logs the 404 as ``[error] XCom not found`` — in the scheduler's log
when a LocalExecutor worker runs the task.
"""

from __future__ import annotations

import os
import subprocess
import sys

RUN = """
from ragtrail.cli.main import run_ingest
s = run_ingest({"source": %r, "product": "no-docs", "version": "v1"})
print("RESULT", s["status"], s["tasks"]["dedupe"], s["tasks"]["index"])
"""


def test_tasks_skipped_in_a_failed_run_log_no_xcom_not_found(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "empty.md").write_text("")  # no usable document: ingest fails, dedupe and index skip themselves
    env = {**os.environ, "RAGTRAIL_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", RUN % str(source)], env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert "RESULT FAILED SKIPPED SKIPPED" in out, out[-3000:]
    assert "XCom not found" not in out, [line for line in out.splitlines() if "XCom not found" in line][:3]
