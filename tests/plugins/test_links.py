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

from dag_process import run_dag_file, runs_of

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


LINK_DAG = '''
from airflow.sdk import Param, dag, task


@dag(schedule=None, params={"product": Param("links"), "version": Param("v1")})
def link_dag():
    @task.tracked(stage="make")
    def make(params=None, tracker=None):
        return 1

    @task
    def boom():
        raise RuntimeError("boom")

    @task.tracked(stage="after", needs=("boom",), trigger_rule="all_done")
    def after(params=None, tracker=None):
        return 2

    [make(), boom()] >> after()


link_dag()
'''

LINK_RUN = """
import json, os
from ragtrail.cli.airflow_home import prepare
prepare()
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
dr = bag.get_dag("link_dag").test()
links = {}
with create_session() as session:
    for row in session.scalars(XComModel.get_many(run_id=dr.run_id, key=None, dag_ids="link_dag")):
        if row.key.startswith("_link_"):
            links[row.task_id + " " + row.key] = XComModel.deserialize_value(row)
print("RESULT " + json.dumps({"run_id": dr.run_id, "links": links}))
"""


def test_a_tracked_task_stores_its_links_and_a_skipped_one_stores_them_empty(tmp_path):
    """The task persists the run's ids; the link only formats them: the URL of that try's run and of the
    parent run, and nothing (a disabled button, no XCom lookup) for a task skipped before its run opened."""
    result, home, out = run_dag_file(tmp_path, "link_dag", LINK_DAG, LINK_RUN, check=False)
    runs = runs_of(home, result["run_id"])
    (make,) = [r for r in runs if r.data.tags.get("airflow.task_id") == "make"]
    exp, parent = make.info.experiment_id, make.data.tags["mlflow.parentRunId"]
    links = result["links"]
    assert links["make _link_MLflowRunLink"].endswith(f"#/experiments/{exp}/runs/{make.info.run_id}"
                                                      "?workflowType=machine_learning"), links
    assert f"/runs/{parent}" in links["make _link_MLflowPipelineRunLink"], links
    assert not links.get("after _link_MLflowRunLink") and not links.get("after _link_MLflowPipelineRunLink"), links
    assert not [r for r in runs if r.data.tags.get("airflow.task_id") == "after"]  # skipped before its run opened
    assert "XCom not found" not in out
