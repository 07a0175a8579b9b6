"""A tracked task that Airflow's task runner fails *after* its callable returned (here: None for a mapped
downstream task, XComForMappingNotPushed) no longer leaves a FINISHED run behind: its run ends FAILED with the
cause, and the DAG run's reasons carry it (issue 24 item 4). dag.test in a process of its own."""

from __future__ import annotations

from dag_process import run_dag_file, runs_of

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
    out, home, _ = run_dag_file(tmp_path, "late_fail", DAG, RUN)
    assert out["state"] == "failed"
    runs = runs_of(home, out["run_id"])
    (make,) = [r for r in runs if r.data.tags.get("airflow.task_id") == "make"]
    assert make.info.status == "FAILED"
    assert make.data.tags["ragtrail.error"] == "XComForMappingNotPushed: did not push XCom for task mapping"


FAN_OUT_DAG = '''
from airflow.sdk import Param, dag, task


@dag(schedule=None, params={"product": Param("fanout"), "version": Param("v1")})
def fan_out():
    @task.tracked(stage="make", fan_out="docs_per_batch", retries=0)
    def make(params=None, tracker=None):
        return list(range(6))  # one more than the map limit of 5 this test sets

    @task
    def use(x):
        return x

    use.expand(x=make())


fan_out()
'''


def test_a_list_past_the_map_limit_fails_its_task_with_the_cause(tmp_path, monkeypatch):
    """plan and dedupe grow their batches to fit [core] max_map_length; a task of one's own that returns too
    long a list still fails, and its run says why (not only Airflow's log)."""
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "5")
    out, home, _ = run_dag_file(tmp_path, "fan_out", FAN_OUT_DAG, RUN.replace("late_fail", "fan_out"))
    assert out["state"] == "failed"
    (make,) = [r for r in runs_of(home, out["run_id"]) if r.data.tags.get("airflow.task_id") == "make"]
    assert make.info.status == "FAILED"
    assert make.data.tags["ragtrail.error"] == ("6 batches exceed Airflow's map limit (max_map_length 5): raise "
                                                "docs_per_batch (--docs-per-batch) or AIRFLOW__CORE__MAX_MAP_LENGTH")
