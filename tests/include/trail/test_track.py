"""@track(feature, operation): a trace span per call (not a run), nested under the task's run, sampled; failures,
the returned-metrics convention, tracking off, MLflow down."""

from __future__ import annotations

import asyncio
import uuid

import mlflow
import pytest
from servers import free_port

from ragtrail.core.products import experiment_name
from ragtrail.trail.track import returned_metrics, track


def traces_of(client, experiment_id: str) -> list:
    mlflow.flush_trace_async_logging()
    return list(client.search_traces(locations=[experiment_id], max_results=100))


def feature_traces(client, feature: str) -> list:
    exp = client.get_experiment_by_name(experiment_name(feature))
    return traces_of(client, exp.experiment_id) if exp else []


def test_standalone_call_is_one_trace_with_inputs_outputs_tokens_and_cost(mlflow_client):
    """Outside a task: one trace in the feature's experiment, no run; the span has the summarised inputs and
    output, the token usage and cost the function returned, and its metrics."""
    feature = f"answers-{uuid.uuid4().hex[:6]}"

    @track(feature, "generate")
    def answer(question: str) -> dict:
        return {"text": question.upper() * 200, "metrics": {"passages": 3},
                "tokens": {"prompt": 120, "completion": 30}, "cost": 0.0042}

    assert answer("why?")["text"].startswith("WHY?")  # the return value is untouched
    (trace,) = feature_traces(mlflow_client, feature)
    (root,) = trace.data.spans
    assert root.name == f"{feature}.generate" and root.span_type == "CHAIN" and trace.info.state == "OK"
    assert root.inputs == {"question": "why?"}
    assert root.outputs["text"].endswith("(800 chars)") and len(root.outputs["text"]) < 400  # summarised
    assert root.attributes["mlflow.chat.tokenUsage"] == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    assert root.attributes["mlflow.llm.cost"] == {"total_cost": 0.0042}
    assert root.attributes["ragtrail.passages"] == 3
    assert trace.info.execution_duration is not None  # the latency
    exp = mlflow_client.get_experiment_by_name(experiment_name(feature))
    assert exp.tags["ragtrail.kind"] == "feature"
    assert mlflow_client.search_runs([exp.experiment_id]) == []  # traces, not a run per call


def test_failure_is_recorded_and_reraised(mlflow_client):
    feature = f"fails-{uuid.uuid4().hex[:6]}"

    @track(feature)
    def parse(text: str):
        raise ValueError(f"cannot parse {text!r}")

    with pytest.raises(ValueError, match="cannot parse"):
        parse("x")
    (trace,) = feature_traces(mlflow_client, feature)
    (root,) = trace.data.spans
    assert trace.info.state == "ERROR" and root.name == f"{feature}.parse"
    (event,) = [e for e in root.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert "cannot parse 'x'" in event.attributes["exception.message"]


def test_async_functions_and_nested_calls(mlflow_client):
    """An async call is traced too; a tracked call inside another one is a child span of the same trace."""
    feature = f"async-{uuid.uuid4().hex[:6]}"

    @track(feature, "embed")
    def embed(text: str) -> list:
        return [len(text)]

    @track(feature, "fetch")
    async def fetch() -> dict:
        await asyncio.sleep(0)
        return {"tokens": 7, "vector": embed("abc")}

    assert asyncio.run(fetch()) == {"tokens": 7, "vector": [3]}
    (trace,) = feature_traces(mlflow_client, feature)
    spans = {s.name: s for s in trace.data.spans}
    assert spans[f"{feature}.embed"].parent_id == spans[f"{feature}.fetch"].span_id
    assert spans[f"{feature}.fetch"].attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 7


def test_sampling_records_only_a_share(mlflow_client, monkeypatch):
    feature = f"sampled-{uuid.uuid4().hex[:6]}"

    @track(feature, "work")
    def work(i):
        return i

    monkeypatch.setenv("RAGTRAIL_TRACE_SAMPLE_RATE", "0")
    assert [work(i) for i in range(5)] == list(range(5))
    assert feature_traces(mlflow_client, feature) == []
    monkeypatch.setenv("RAGTRAIL_TRACE_SAMPLE_RATE", "1")
    work(9)
    assert len(feature_traces(mlflow_client, feature)) == 1


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
    from ragtrail.trail.switches import use_section

    monkeypatch.delenv("RAGTRAIL_TRACKING", raising=False)
    feature = f"section-off-{uuid.uuid4().hex[:6]}"

    @track(feature, "noop")
    def double(x):
        return 2 * x

    with use_section({"tracking_enabled": "False"}):
        assert double(21) == 42
    assert mlflow_client.get_experiment_by_name(experiment_name(feature)) is None


def test_mlflow_down_lenient_returns_strict_raises(monkeypatch):
    """Lenient: the call runs untraced and a warning is logged; strict: one error naming the URI."""
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


def test_linked_to_the_task_run_that_calls_it(mlflow_client):
    """Inside a tracked task the call's trace is linked to the task's run (mlflow.sourceRun), in the product's
    experiment; the DAG run still has exactly its task runs (no run per call)."""
    from ragtrail.trail.runs import child_runs
    from ragtrail.trail.task_run import TaskRun

    product = f"nested-{uuid.uuid4().hex[:6]}"

    @track("retrieval", "lookup")
    def lookup(q: str) -> dict:
        return {"hits": [q], "metrics": {"hits": 1}}

    with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="search", product=product, version="v1") as run:
        lookup("a")
        lookup("b")
    traces = traces_of(mlflow_client, run.experiment_id)
    assert len(traces) == 2
    assert all(t.info.trace_metadata["mlflow.sourceRun"] == run.mlflow_run_id for t in traces)
    assert {t.data.spans[0].name for t in traces} == {"retrieval.lookup"}
    assert [r.info.run_id for r in child_runs(mlflow_client, run.experiment_id, run.parent_run_id)] == [
        run.mlflow_run_id]
    assert mlflow_client.search_runs([run.experiment_id], "tags.`ragtrail.role` = 'call'") == []
