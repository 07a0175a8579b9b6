"""@track(feature, operation): standalone and nested runs, failures, the returned-metrics convention, tracking off."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from servers import free_port

from ragtrail.products import experiment_name
from ragtrail.trail.track import returned_metrics, track


def runs_of(client, feature: str) -> list:
    exp = client.get_experiment_by_name(experiment_name(feature))
    return client.search_runs([exp.experiment_id], "tags.`ragtrail.role` = 'call'") if exp else []


def test_standalone_call_logs_latency_success_and_what_it_returns(mlflow_client):
    """Outside a task: its own run in the feature's experiment, with latency, success, metrics, tokens, cost."""
    feature = f"answers-{uuid.uuid4().hex[:6]}"

    @track(feature, "generate")
    def answer(question: str) -> dict:
        return {"text": question.upper(), "metrics": {"passages": 3}, "tokens": {"prompt": 120, "completion": 30},
                "cost": 0.0042}

    assert answer("why?")["text"] == "WHY?"  # the return value is untouched
    (run,) = runs_of(mlflow_client, feature)
    m = run.data.metrics
    assert run.info.run_name == f"{feature}.generate" and run.info.status == "FINISHED"
    assert m["success"] == 1 and m["latency_s"] >= 0 and m["passages"] == 3 and m["cost"] == 0.0042
    assert (m["tokens_input"], m["tokens_output"], m["tokens_total"]) == (120, 30, 150)
    assert run.data.tags["ragtrail.feature"] == feature and run.data.tags["ragtrail.operation"] == "generate"
    exp = mlflow_client.get_experiment(run.info.experiment_id)
    assert exp.tags["ragtrail.kind"] == "feature" and exp.name == experiment_name(feature)


def test_failure_is_logged_and_reraised(mlflow_client):
    feature = f"fails-{uuid.uuid4().hex[:6]}"

    @track(feature)
    def parse(text: str):
        raise ValueError(f"cannot parse {text!r}")

    with pytest.raises(ValueError, match="cannot parse"):
        parse("x")
    (run,) = runs_of(mlflow_client, feature)
    assert run.info.status == "FAILED" and run.info.run_name == f"{feature}.parse"
    assert run.data.tags["ragtrail.error_class"] == "ValueError"
    assert run.data.tags["ragtrail.error"] == "ValueError: cannot parse 'x'"
    assert run.data.metrics["success"] == 0 and "latency_s" in run.data.metrics


def test_async_functions_are_tracked_too(mlflow_client):
    feature = f"async-{uuid.uuid4().hex[:6]}"

    @track(feature, "fetch")
    async def fetch() -> dict:
        await asyncio.sleep(0)
        return {"tokens": 7}

    assert asyncio.run(fetch()) == {"tokens": 7}
    (run,) = runs_of(mlflow_client, feature)
    assert run.data.metrics["tokens_total"] == 7


def test_tracking_off_is_a_plain_call(mlflow_client, monkeypatch):
    monkeypatch.setenv("RAGTRAIL_TRACKING", "off")
    feature = f"off-{uuid.uuid4().hex[:6]}"

    @track(feature, "noop")
    def double(x):
        return 2 * x

    assert double(21) == 42
    assert mlflow_client.get_experiment_by_name(experiment_name(feature)) is None


def test_tracking_off_in_the_section_a_task_hands_in(mlflow_client, monkeypatch):
    """A tracked task hands the trail Airflow's [ragtrail] values for its duration: `tracking_enabled = False`
    there makes @track in the task body a plain call too."""
    from ragtrail.trail.settings import use_section

    monkeypatch.delenv("RAGTRAIL_TRACKING", raising=False)
    feature = f"section-off-{uuid.uuid4().hex[:6]}"

    @track(feature, "noop")
    def double(x):
        return 2 * x

    with use_section({"tracking_enabled": "False"}):
        assert double(21) == 42
    assert mlflow_client.get_experiment_by_name(experiment_name(feature)) is None


def test_mlflow_down_lenient_returns_strict_raises(monkeypatch):
    """Lenient: the result comes back and a warning is logged; strict: one error naming the URI."""
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAGTRAIL_MLFLOW_RETRIES", "0")

    @track("down", "work")
    def work():
        return {"metrics": {"n": 1}}

    assert work() == {"metrics": {"n": 1}}
    monkeypatch.setenv("RAGTRAIL_TRACKING_MODE", "strict")
    with pytest.raises(RuntimeError) as err:
        work()
    assert type(err.value).__name__ == "TrackingUnavailable" and uri in str(err.value)


def test_returned_metrics_convention():
    assert returned_metrics("text") == {} and returned_metrics({"metrics": {"ok": True, "n": 2}}) == {"n": 2}
    assert returned_metrics({"tokens": {"input": 3, "output": 4}}) == {
        "tokens_input": 3, "tokens_output": 4, "tokens_total": 7}
    assert returned_metrics({"tokens": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9}})[
        "tokens_total"] == 9
    assert returned_metrics({"cost": 1.5, "other": 9}) == {"cost": 1.5}


def test_nested_under_the_task_run_that_calls_it(mlflow_client):
    """Inside a tracked task (the operator runs the task body inside its TaskRun) the call's run is a child of
    the task's run, in the product's experiment; the DAG run's roll-up still sees exactly its task runs."""
    from ragtrail.trail.runs import child_runs
    from ragtrail.trail.task_run import TaskRun

    product = f"nested-{uuid.uuid4().hex[:6]}"

    @track("retrieval", "lookup")
    def lookup(q: str) -> dict:
        return {"hits": [q], "metrics": {"hits": 1}}

    with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="search", product=product, version="v1") as run:
        lookup("a")
        lookup("b")
    lookup("outside")  # after the task: standalone again
    calls = mlflow_client.search_runs([run.experiment_id], "tags.`ragtrail.role` = 'call'")
    assert len(calls) == 2 and all(c.data.tags["mlflow.parentRunId"] == run.mlflow_run_id for c in calls)
    assert {c.info.run_name for c in calls} == {"retrieval.lookup"}
    assert all(c.data.tags["airflow.task_id"] == "search" and c.data.metrics["hits"] == 1 for c in calls)
    assert [r.info.run_id for r in child_runs(mlflow_client, run.experiment_id, run.parent_run_id)] == [
        run.mlflow_run_id]
    assert len(runs_of(mlflow_client, "retrieval")) >= 1  # the call outside the task
