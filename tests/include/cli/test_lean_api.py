"""``ragtrail.cli.lean_api``: ``dag.test``'s in-process execution API built for its client's one version.

A real ``dag.test`` run (mapped tasks, XCom pulls, a failed task and its downstream ``all_done`` task: the
execution API's routes the pipeline uses) is served by the trimmed app; outside the block, and whenever
the trimmed build is not known to work, Airflow's own app is used.
"""

from __future__ import annotations

import pytest
from dag_process import run_dag_file

DAG = '''
from airflow.sdk import dag, task


@dag(schedule=None)
def lean_dag():
    @task
    def versions_seen():
        from airflow.api_fastapi.execution_api import versions
        return [str(v.value) for v in versions.bundle.versions]

    @task
    def numbers():
        return [1, 2, 3]

    @task
    def double(n):
        return 2 * n

    @task(trigger_rule="all_done")
    def total(xs, seen):
        return {"sum": sum(xs), "seen": seen}

    @task
    def boom():
        raise RuntimeError("boom")

    [boom()] >> total(double.expand(n=numbers()), versions_seen())


lean_dag()
'''

RUN = """
import json, os
from ragtrail.cli.airflow_home import prepare
prepare()
from airflow.api_fastapi.execution_api import versions
from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from ragtrail.cli.lean_api import lean_execution_api
bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
with lean_execution_api() as reason:
    dr = bag.get_dag("lean_dag").test()
with create_session() as session:
    row = session.scalars(XComModel.get_many(run_id=dr.run_id, key="return_value", task_ids="total",
                                             dag_ids="lean_dag")).first()
    total = XComModel.deserialize_value(row)
markers = [p.name for p in os.scandir(os.environ["AIRFLOW_HOME"]) if p.name.startswith(".lean-execution-api-ok")]
print("RESULT " + json.dumps({"reason": reason, "state": str(dr.state), "total": total, "markers": markers,
                              "after": len(versions.bundle.versions)}))
"""


def test_a_dag_run_is_served_by_the_trimmed_api_and_airflows_own_app_comes_back(tmp_path):
    result, _, out = run_dag_file(tmp_path, "lean_dag", DAG, RUN)
    assert result["reason"] is None, result
    assert result["total"]["sum"] == 12, (result, out[-2000:])  # the mapped results and the all_done task ran
    assert result["total"]["seen"] == [result["total"]["seen"][0]]  # one API version while the run ran
    assert result["state"] == "success"  # the leaf (all_done) decides; boom failed and was reported so
    assert len(result["markers"]) == 1  # the trial's verdict, kept for the next run
    assert result["after"] > 1  # Airflow's own bundle back after the block


@pytest.fixture
def untouched():
    from airflow.api_fastapi.execution_api import routes, versions

    before = versions.bundle, routes.execution_api_router
    yield before
    assert (versions.bundle, routes.execution_api_router) == before


def test_a_client_of_another_version_keeps_airflows_app(tmp_path, monkeypatch, untouched):
    import airflow.sdk.api.datamodels._generated as generated
    from airflow.api_fastapi.execution_api import versions

    from ragtrail.cli.lean_api import lean_execution_api

    monkeypatch.setattr(generated, "API_VERSION", "2000-01-01")
    with lean_execution_api(tmp_path) as reason:
        assert versions.bundle is untouched[0]
    assert "is not the client's 2000-01-01" in reason
    assert not list(tmp_path.iterdir())


def test_a_trial_that_fails_keeps_airflows_app_and_no_verdict(tmp_path, monkeypatch, untouched):
    from airflow.api_fastapi.execution_api import app as exec_app
    from airflow.api_fastapi.execution_api import versions

    from ragtrail.cli.lean_api import lean_execution_api

    def broken(*a, **k):  # an Airflow whose app the trimmed versions cannot build (not provokable otherwise)
        raise RuntimeError("routes moved")

    monkeypatch.setattr(exec_app, "create_task_execution_api_app", broken)
    with lean_execution_api(tmp_path) as reason:
        assert versions.bundle is untouched[0]
    assert reason == "RuntimeError: routes moved"
    assert not list(tmp_path.iterdir())
