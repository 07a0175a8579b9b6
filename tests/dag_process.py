"""Run a test's DAG file with ``dag.test`` in a process of its own and read back what it printed and logged.

The runner is Python that prints one ``RESULT <json>`` line; it runs with a fresh ``RAGTRAIL_HOME`` (its own
SQLite Airflow home and MLflow store) and the DAG file as the only DAG of its DAGs folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_dag_file(tmp_path: Path, name: str, dag_source: str, runner: str, check: bool = True) -> tuple[dict, Path, str]:
    """Write ``dag_source`` as ``<name>.py``, run ``runner``; return its RESULT, the home and the whole output
    (``check``: the process must also exit 0)."""
    dags, home = tmp_path / "dags", tmp_path / "home"
    dags.mkdir()
    (dags / f"{name}.py").write_text(dag_source)
    env = {**os.environ, "RAGTRAIL_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-c", runner], env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines and (proc.returncode == 0 or not check), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[0][7:]), home, out


def runs_of(home: Path, run_id: str) -> list:
    """The MLflow runs of one DAG run in that home's store (every experiment)."""
    from ragtrail.trail.client import get_client

    client = get_client(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`airflow.run_id` = '{run_id}'")
