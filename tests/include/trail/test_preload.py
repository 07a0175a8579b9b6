"""A parent that forks task processes has MLflow's SQL store ready, so each child does not configure it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
from ragtrail.trail.task_run import preload
preload()
loaded = "mlflow.store.tracking.sqlalchemy_store" in sys.modules
configured = None
if loaded:
    from mlflow.store.db.base_sql_model import Base
    configured = not Base.registry._new_mappers
print(json.dumps({"loaded": loaded, "configured": configured}))
"""


def _preload(tmp_path, uri: str) -> dict:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAGTRAIL_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_preload_configures_a_sql_tracking_store(tmp_path):
    # a task process forked after this starts its run without importing the SQL store (~1 s of CPU each)
    assert _preload(tmp_path, f"sqlite:///{tmp_path}/mlflow.db") == {"loaded": True, "configured": True}


def test_preload_leaves_a_tracking_server_alone(tmp_path):
    assert _preload(tmp_path, "http://127.0.0.1:9/")["loaded"] is False
