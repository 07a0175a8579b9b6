"""The listener in-process (``dag.test``, as ``ragtrail ingest`` runs DAGs): a tagged user DAG is trailed with no
change to its code and closed by the DAG-run closer; the environment it exported is put back; the opt-in rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragtrail.core.products import experiment_name
from ragtrail.trail.closer import any_task_publishes
from ragtrail.trail.rollup import Unit
from ragtrail_airflow.listener import opted_in

USER_DAGS = Path(__file__).resolve().parents[1] / "user_dags"


# dag.test needs the DAG in the DAGs folder Airflow was configured with: a process of its own, with its own home.
RUN = """
import json, os, sys
from ragtrail.cli.airflow_home import prepare
prepare()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert not bag.import_errors, bag.import_errors
out = {}
for dag_id, conf in (("user_tracked", {"learning_rate": 0.1}), ("user_plain", {})):
    dr = bag.get_dag(dag_id).test(run_conf=conf)
    out[dag_id] = {"run_id": dr.run_id, "state": str(getattr(dr.state, "value", dr.state))}
out["env_left"] = sorted(k for k in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID") if k in os.environ)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    home = tmp_path_factory.mktemp("listener-home")
    env = {**os.environ, "RAGTRAIL_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(USER_DAGS)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    from ragtrail.trail.client import get_client

    return json.loads(lines[0][7:]), get_client(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")


def test_a_tagged_dag_run_in_process_is_trailed_and_closed(in_process):
    out, client = in_process
    assert out["user_tracked"]["state"] == "failed" and out["env_left"] == []  # env put back after each task
    exp = client.get_experiment_by_name(experiment_name("user_tracked"))
    assert exp.tags["ragtrail.kind"] == "dag"
    runs = client.search_runs([exp.experiment_id], f"tags.`airflow.run_id` = '{out['user_tracked']['run_id']}'")
    (parent,) = [r for r in runs if r.data.tags["ragtrail.role"] == "parent"]
    tasks = {(r.info.run_name, r.data.tags["airflow.try_number"]): r for r in runs if r is not parent}
    assert len(tasks) == 7 and all(r.info.status in ("FINISHED", "FAILED") for r in tasks.values())
    assert tasks[("train", "1")].data.metrics["accuracy"] == 0.93  # the task's own mlflow.log_metric
    assert tasks[("train", "1")].data.params["learning_rate"] == "0.1"
    assert parent.data.tags["ragtrail.status"] == "PARTIAL"
    assert parent.data.tags["ragtrail.closed_by"] == "dag_run_closer" and parent.info.status == "FAILED"


def test_an_untagged_dag_is_left_alone(in_process):
    out, client = in_process
    assert out["user_plain"]["state"] == "success"
    assert client.get_experiment_by_name(experiment_name("user_plain")) is None


@pytest.mark.parametrize("tags,section,expected", [
    (["mlflow"], {}, True), (["other"], {}, False), ([], {}, False),
    (["ml"], {"dag_tags": "ml, training"}, True), (["mlflow"], {"dag_tags": "ml"}, False),
    ([], {"track_all_dags": "True"}, True)])
def test_which_dags_opt_in(monkeypatch, tags, section, expected):
    monkeypatch.delenv("RAGTRAIL_DAG_TAGS", raising=False)
    monkeypatch.delenv("RAGTRAIL_TRACK_ALL_DAGS", raising=False)
    assert opted_in(tags, section) is expected


def test_a_user_dag_without_publishing_tasks_rolls_up_by_what_got_done():
    """PARTIAL when some task completed all its units and something else failed; FAILED when no task did."""
    from ragtrail.trail.rollup import rollup_status

    some = [Unit("hello", -1, "FINISHED"), Unit("square", 0, "FINISHED"), Unit("square", 1, "FAILED")]
    assert rollup_status(some, any_task_publishes(some)).status == "PARTIAL"
    none = [Unit("square", 0, "FINISHED"), Unit("square", 1, "FAILED")]
    assert rollup_status(none, any_task_publishes(none)).status == "FAILED"
    ok = [Unit("a", -1, "FINISHED"), Unit("b", -1, "SKIPPED")]
    assert rollup_status(ok, any_task_publishes(ok)).status == "FINISHED"
