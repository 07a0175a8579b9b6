"""A tracked task that Airflow's task runner fails *after* its callable returned (here: None for a mapped
downstream task, XComForMappingNotPushed) no longer leaves a FINISHED run behind: its run ends FAILED with the
cause, and the DAG run's reasons carry it (issue 24 item 4). dag.test in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

DAG = '''
from airflow.sdk import Param, dag, task


@dag(schedule=None, params={"product": Param("latefail"), "version": Param("v1")})
def late_fail():
    @task.tracked(stage="make")
    def make(params=None, tracker=None):
        return None  # a mapped downstream needs a list: the runner fails the task after this returns

    @task
    def use(x):
        return x

    use.expand(x=make())


late_fail()
'''

RUN = """
import json, os
from ragtrail.cli.airflow_home import prepare
prepare()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
assert not bag.import_errors, bag.import_errors
dr = bag.get_dag("late_fail").test()
print("RESULT " + json.dumps({"run_id": dr.run_id, "state": str(getattr(dr.state, "value", dr.state))}))
"""


def test_a_failure_after_the_callable_returned_is_on_the_tasks_run(tmp_path):
    dags, home = tmp_path / "dags", tmp_path / "home"
    dags.mkdir()
    (dags / "late_fail.py").write_text(DAG)
    env = {**os.environ, "RAGTRAIL_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[0][7:])
    assert out["state"] == "failed"
    from ragtrail.trail.client import get_client

    client = get_client(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`airflow.run_id` = '{out['run_id']}'")
    (make,) = [r for r in runs if r.data.tags.get("airflow.task_id") == "make"]
    assert make.info.status == "FAILED"
    assert make.data.tags["ragtrail.error"] == "XComForMappingNotPushed: did not push XCom for task mapping"
