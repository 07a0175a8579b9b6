"""A Celery worker with ragtrail's Celery config starts every task with MLflow already imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from live_cluster import REDIS, services_missing

APP = """
import sys
from celery import Celery
from ragtrail_airflow.celery_config import CELERY_CONFIG

app = Celery("probe", config_source={{**CELERY_CONFIG, "broker_url": "{broker}", "result_backend": "{broker}",
                                     "task_default_queue": "{queue}", "worker_hijack_root_logger": False}})


@app.task(name="probe")
def probe():
    return sorted(m for m in ("mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store") if m in sys.modules)
"""


def _worker_answer(tmp_path, preload: str) -> list[str]:
    """Start a real prefork Celery worker (Redis broker) on the app above; what its task process found imported."""
    why = services_missing()
    if why:
        pytest.skip(why)
    queue = f"ragtrail_probe_{uuid.uuid4().hex[:8]}"
    broker = f"redis://{REDIS[0]}:{REDIS[1]}/14"
    (tmp_path / "probe_app.py").write_text(textwrap.dedent(APP.format(broker=broker, queue=queue)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RAGTRAIL_PRELOAD_MLFLOW": preload,
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "RAGTRAIL_HOME": str(tmp_path / "home"),
           "AIRFLOW_HOME": str(tmp_path / "airflow")}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "probe_app", "worker", "--pool", "prefork",
                               "--concurrency", "1", "-Q", queue, "--without-heartbeat", "--without-gossip",
                               "--without-mingle", "--loglevel", "WARNING"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"))
    try:
        sys.path.insert(0, str(tmp_path))
        import probe_app

        return probe_app.probe.apply_async(queue=queue).get(timeout=120)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("probe_app", None)
        worker.terminate()
        worker.wait(timeout=60)


def test_a_celery_worker_preloads_mlflow_for_its_tasks(tmp_path):
    assert _worker_answer(tmp_path, "on") == ["mlflow.store.tracking.sqlalchemy_store", "mlflow.tracking"]


def test_the_preload_can_be_switched_off(tmp_path):
    assert _worker_answer(tmp_path, "off") == []
