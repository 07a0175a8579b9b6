"""The trail's writer against a real MLflow store: one parent per DAG run, terminal states, batching, redaction."""

from __future__ import annotations

import threading
import time
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


def _mapped_runs(client, exp_id: str, parent: str) -> list:
    from mlflow.entities import ViewType

    return client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent}' and tags.`ragtrail.mapped` = 'true'",
                              run_view_type=ViewType.ALL)


def test_map_indexes_racing_share_exactly_one_run_which_the_closer_ends(exp):
    """Eight map indexes of one mapped task start at once (own clients, as on eight workers): one run is
    created (none created and deleted), each index a step on it; index 3 fails, index 7 is "SIGKILLed" (never
    ends). The closer ends the run FAILED from Airflow's states and names the failed indexes and causes."""
    from ragtrail.trail.closer import read_units

    client, exp_id = exp
    dag_run = f"manual__{uuid.uuid4()}"
    find_or_create_parent(client, exp_id, dag_id="d", run_id=dag_run, tags={})  # the first task made it
    runs, errors, barrier = {}, [], threading.Barrier(8)

    def index(i: int):
        run = TaskRun(dag_id="d", run_id=dag_run, task_id="chunk", product="tracking-tests", version="v1",
                      map_index=i, shared=True)
        barrier.wait()
        try:
            run.start()
            runs[i] = run
            run.recorder.metric(chunk_count=10 + i)
            run.recorder.step(1, chunk_done=1)  # a progress step: dropped on a map index
            if i == 3:
                raise ValueError("bad batch 3")
            if i != 7:  # 7: killed before its end
                run.end("FINISHED")
        except ValueError as err:
            run.recorder.tag(**{"ragtrail.error": f"ValueError: {err}"})
            run.end("FAILED")
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=index, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(runs) == 8
    parent = runs[0].parent_run_id
    (shared,) = _mapped_runs(client, exp_id, parent)
    assert {r.mlflow_run_id for r in runs.values()} == {shared.info.run_id}
    assert shared.info.status == "RUNNING" and shared.info.run_name == "chunk"
    history = {m.step: m.value for m in client.get_metric_history(shared.info.run_id, "chunk_count")}
    assert history == {i: 10.0 + i for i in range(8) if i != 7}
    assert client.get_metric_history(shared.info.run_id, "chunk_done") == []
    assert shared.data.tags["ragtrail.map_error.3"] == "ValueError: bad batch 3"

    states = {("chunk", i): "success" for i in range(8)} | {("chunk", 3): "failed", ("chunk", 7): "failed"}
    units, found = read_units(client, exp_id, parent, states, time.time(), ["chunk"])
    closed = client.get_run(shared.info.run_id)
    assert closed.info.status == "FAILED" and closed.data.tags["ragtrail.failed_indexes"] == "3, 7"
    assert closed.data.tags["ragtrail.error"] == "chunk[3]: ValueError: bad batch 3; chunk[7]: failed"
    assert [(u.label, u.state, u.error) for u in units if not u.ok] == [
        ("chunk[3]", "FAILED", "ValueError: bad batch 3"), ("chunk[7]", "FAILED", None)]
    assert units[0].metrics["chunk_count"] == 10 and found == {"missing_runs": ["chunk[7]"], "closed_runs": []}
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        table = json.loads(open(client.download_artifacts(shared.info.run_id, "map_indexes.json", tmp)).read())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert closed.data.tags["ragtrail.map_table"] == f"{closed.info.artifact_uri}/map_indexes.json"
    read_units(client, exp_id, parent, states, time.time(), ["chunk"])  # a second closer: the table is replaced
    with tempfile.TemporaryDirectory() as tmp:
        again = json.loads(open(client.download_artifacts(shared.info.run_id, "map_indexes.json", tmp)).read())
    assert len(again["data"]) == 8
    assert sorted(r["map_index"] for r in rows) == list(range(8))
    failed = sorted((r["map_index"], r["state"], r["error"]) for r in rows if r["state"] != "success")
    assert failed[0] == (3, "failed", "ValueError: bad batch 3") and failed[1][:2] == (7, "failed")


def test_a_claimer_that_died_before_creating_the_run_holds_up_the_others_only_briefly(exp):
    """The first claim's winner was SIGKILLed between its claim and its run: the next generation creates it."""
    from ragtrail.trail.mapped import find_or_create_mapped_run
    from ragtrail.trail.runs import find_or_create_parent

    client, exp_id = exp
    parent = find_or_create_parent(client, exp_id, dag_id="d", run_id=f"manual__{uuid.uuid4()}", tags={})
    client.log_param(parent, "ragtrail.claim.embed", "embed[0] try 1 dead")
    run, created = find_or_create_mapped_run(client, exp_id, parent, task_id="embed", tags={
        "mlflow.parentRunId": parent, "airflow.task_id": "embed"}, run_name="embed", claimer="embed[1]", wait_s=0.3)
    assert created and [r.info.run_id for r in _mapped_runs(client, exp_id, parent)] == [run.info.run_id]
    assert client.get_run(parent).data.params["ragtrail.claim.embed.1"] == "embed[1]"
    again, created = find_or_create_mapped_run(client, exp_id, parent, task_id="embed", tags={}, run_name="embed",
                                               claimer="embed[2]")
    assert not created and again.info.run_id == run.info.run_id


def test_progress_steps_are_capped_per_task(exp):
    """20,000 progress steps (an index task's upsert batches at scale) keep at most 200, evenly spread."""
    client, exp_id = exp
    run = client.create_run(exp_id)
    rec = Recorder()
    for i in range(1, 20_001):
        rec.step(i, index_done=i * 10)
    log_recorder(client, run.info.run_id, rec)
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "index_done"))
    assert 100 <= len(steps) <= 200 and steps[-1] > 19_000
    assert len({b - a for a, b in zip(steps, steps[1:], strict=False)}) == 1  # one stride
