"""The trail's writer against a real MLflow store: one parent per DAG run, terminal states, batching, redaction."""

from __future__ import annotations

import threading
import uuid

import pytest

from ragtrail.core.recorder import Recorder
from ragtrail.trail.client import get_client, get_or_create_experiment
from ragtrail.trail.names import EXPERIMENT_KIND_TAG, redact
from ragtrail.trail.runs import find_or_create_parent, log_recorder, merge_parents
from ragtrail.trail.task_run import TaskRun
from ragtrail_airflow.config import airflow_origin


@pytest.fixture()
def exp():
    client = get_client()
    return client, get_or_create_experiment(client, "tracking-tests")


def test_parent_race_converges_to_one_parent(exp):
    """Eight concurrent first tasks of one DAG run: after the roll-up's merge there is exactly one parent,
    and every child created under any candidate hangs under it."""
    client, exp_id = exp
    run_id = f"manual__{uuid.uuid4()}"
    found, errors = [], []

    def call():
        try:
            c = get_client()
            parent = find_or_create_parent(c, exp_id, dag_id="d", run_id=run_id, tags={})
            child = c.create_run(exp_id, tags={"mlflow.parentRunId": parent, "ragtrail.role": "task"})
            found.append((parent, child.info.run_id))
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=call) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(found) == 8
    winner = merge_parents(client, exp_id, "d", run_id)
    parents = client.search_runs([exp_id], f"tags.`airflow.run_id` = '{run_id}'")
    assert [r.info.run_id for r in parents] == [winner]
    for _, child in found:
        assert client.get_run(child).data.tags["mlflow.parentRunId"] == winner


def test_parent_is_reused_by_later_tasks(exp):
    """A retry or a later task finds the existing parent instead of creating another."""
    client, exp_id = exp
    run_id = f"manual__{uuid.uuid4()}"
    first = find_or_create_parent(client, exp_id, dag_id="d", run_id=run_id, tags={}, params={"a": 1})
    assert find_or_create_parent(client, exp_id, dag_id="d", run_id=run_id, tags={}) == first
    assert client.get_run(first).data.params == {"a": "1"}


def test_child_ends_failed_on_exception_and_keeps_what_was_recorded(exp):
    client, exp_id = exp
    with pytest.raises(RuntimeError, match="boom"):
        with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="embed", product="tracking-tests",
                     version="v1") as run:
            run.recorder.metric(embedding_count=5)
            raise RuntimeError("boom")
    child = client.get_run(run.mlflow_run_id)
    assert child.info.status == "FAILED" and child.data.metrics["embedding_count"] == 5
    assert child.data.tags["ragtrail.error"] == "RuntimeError: boom"
    assert child.data.tags["mlflow.parentRunId"] == run.parent_run_id


def test_kill_ends_killed_and_later_end_is_a_no_op(exp):
    client, _ = exp
    run = TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="index", product="tracking-tests", version="v1").start()
    run.kill()
    run.end("FINISHED")
    assert client.get_run(run.mlflow_run_id).info.status == "KILLED"


def test_batches_respect_mlflow_limits(exp):
    """150 params and 1,500 metrics land in one run despite MLflow's 100 / 1000 per-batch limits."""
    client, exp_id = exp
    run = client.create_run(exp_id)
    rec = Recorder()
    rec.param(**{f"p{i}": i for i in range(150)})
    rec.metric(**{f"m{i}": i for i in range(1500)})
    log_recorder(client, run.info.run_id, rec)
    data = client.get_run(run.info.run_id).data
    assert len(data.params) == 150 and len(data.metrics) == 1500


def test_secrets_never_reach_params():
    assert redact("aws_secret_access_key", "abc") == "***"
    assert redact("password", "x") == "***"
    assert redact("source", "s3://AKIA:topsecret@bucket/prefix") == "s3://***@bucket/prefix"
    assert redact("source", "https://user:pw@host/x") == "https://***@host/x"
    assert redact("source", "/data/docs") == "/data/docs"


def test_operator_on_kill_ends_the_run_killed(exp):
    """When Airflow kills a tracked task (on_kill), its MLflow run ends KILLED rather than staying RUNNING."""
    from ragtrail_airflow.operator import TrackedPythonOperator

    client, _ = exp
    op = TrackedPythonOperator(task_id="embed", python_callable=lambda: None, op_args=[], op_kwargs={}, stage="embed")
    op._task_run = TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="embed", product="tracking-tests",
                           version="v1").start()
    op.on_kill()
    assert client.get_run(op._task_run.mlflow_run_id).info.status == "KILLED"


def test_experiments_open_in_mlflows_classic_view(exp):
    """MLflow 3 opens an experiment without a kind in its GenAI view; ours are tagged for model training,
    and one made before the tag existed gets it on first use."""
    client, exp_id = exp
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.delete_experiment_tag(exp_id, EXPERIMENT_KIND_TAG)
    assert get_or_create_experiment(client, "tracking-tests") == exp_id
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_runs_point_back_at_airflow(exp, monkeypatch):
    """A task's run carries the task instance's Airflow URL (tag and description), source and user; the
    parent run the DAG run's, and a name that tells runs apart."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080/")
    run_id = f"manual__{uuid.uuid4()}"
    dag_run = SimpleNamespace(run_type="manual", run_after=datetime(2026, 11, 28, 8, 12, tzinfo=UTC),
                              triggering_user_name="ada")
    origin = airflow_origin(dag_run, dag_id="d", run_id=run_id, task_id="chunk", map_index=2)
    with TaskRun(dag_id="d", run_id=run_id, task_id="chunk", map_index=2, product="tracking-tests",
                 version="v3", origin=origin) as run:
        pass
    client, _ = exp
    child = client.get_run(run.mlflow_run_id)
    parent = client.get_run(run.parent_run_id)
    task_url = f"http://airflow.example:8080/dags/d/runs/{run_id}/tasks/chunk/mapped/2"
    assert child.data.tags["airflow.url"] == task_url and f"]({task_url})" in child.data.tags["mlflow.note.content"]
    assert child.data.tags["mlflow.user"] == "ada" and child.data.tags["mlflow.source.type"] == "JOB"
    assert parent.info.run_name == "tracking-tests v3 · manual · 2026-11-28 08:12"
    assert parent.data.tags["airflow.url"] == f"http://airflow.example:8080/dags/d/runs/{run_id}"


def test_merge_moves_children_of_a_parent_its_creator_deleted(exp):
    """The race the eight threads above can lose under load: a task adopts candidate parent A and creates its
    child there just before A's creator sees an older parent B and deletes A. The merge must move that child
    to B (a child under a deleted parent is lost from the MLflow UI)."""
    client, exp_id = exp
    run_id = f"manual__{uuid.uuid4()}"
    tags = {"ragtrail.role": "parent", "airflow.dag_id": "d", "airflow.run_id": run_id}
    older = client.create_run(exp_id, start_time=1_000, tags=tags).info.run_id
    adopted = client.create_run(exp_id, start_time=2_000, tags=tags).info.run_id
    child = client.create_run(exp_id, tags={"mlflow.parentRunId": adopted, "ragtrail.role": "task"}).info.run_id
    client.delete_run(adopted)  # its creator lost the race and removed its own candidate
    assert merge_parents(client, exp_id, "d", run_id) == older
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == older
