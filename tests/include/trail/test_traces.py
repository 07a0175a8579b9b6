"""RETRIEVER spans for searches (``ragtrail search``, the registered retriever's ``predict``): collection, version,
doc ids, scores, latency; linked to the task's run inside a tracked task; sampled."""

from __future__ import annotations

import os
import time
import uuid

import mlflow

from ragtrail.core.products import experiment_name
from ragtrail.trail.traces import trace_search

HITS = {"q": [{"doc_id": "guide.md", "score": 0.91, "text": "Rerun a task with Clear.", "chunk_id": "c1",
               "found_by": ["dense", "sparse"]},
              {"doc_id": "faq.md", "score": 0.55, "text": "x" * 2000, "chunk_id": "c2", "found_by": ["sparse"]}]}


def _traces(client, experiment_id):
    mlflow.flush_trace_async_logging()
    return list(client.search_traces(locations=[experiment_id], max_results=10))


def test_a_search_is_one_retriever_span_with_what_it_found(mlflow_client):
    product = f"hb-{uuid.uuid4().hex[:6]}"
    t0 = time.time_ns()
    trace_search("ragtrail.search", product, {"q": "how do I rerun?"}, f"{product}__v2", "v2", 5, HITS,
                 t0, t0 + 42_000_000)
    exp = mlflow_client.get_experiment_by_name(experiment_name(f"{product}-search"))
    (trace,) = _traces(mlflow_client, exp.experiment_id)
    (span,) = trace.data.spans
    assert span.span_type == "RETRIEVER" and span.name == "ragtrail.search"
    assert span.inputs == {"query": "how do I rerun?", "k": 5}
    assert span.attributes["ragtrail.collection"] == f"{product}__v2" and span.attributes["ragtrail.version"] == "v2"
    assert span.attributes["ragtrail.doc_ids"] == ["guide.md", "faq.md"]
    assert span.attributes["ragtrail.scores"] == [0.91, 0.55]
    assert [d["metadata"]["doc_id"] for d in span.outputs] == ["guide.md", "faq.md"]
    # which prefetch of a hybrid search found each hit: per document, and as one attribute
    assert [d["metadata"]["found_by"] for d in span.outputs] == [["dense", "sparse"], ["sparse"]]
    assert span.attributes["ragtrail.found_by"] == ["dense+sparse", "sparse"]
    assert len(span.outputs[1]["page_content"]) < 400  # summarised, not the whole chunk
    assert round((span.end_time_ns - span.start_time_ns) / 1e6) == 42  # the search's own latency


def test_inside_a_task_the_search_is_linked_to_its_run_and_sampling_can_drop_it(mlflow_client, monkeypatch):
    from ragtrail.trail.task_run import TaskRun

    product = f"hb-{uuid.uuid4().hex[:6]}"
    with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="evaluate", product=product, version="v1") as run:
        t0 = time.time_ns()
        trace_search("retriever.predict", product, {"a": "one", "b": "two"}, f"{product}__v1", "v1", 2, HITS,
                     t0, time.time_ns())
        monkeypatch.setenv("RAGTRAIL_TRACE_SAMPLE_RATE", "0")
        trace_search("retriever.predict", product, {"q": "dropped"}, None, None, 2, HITS, t0, time.time_ns())
    (trace,) = _traces(mlflow_client, run.experiment_id)
    assert trace.info.trace_metadata["mlflow.sourceRun"] == run.mlflow_run_id
    assert trace.data.spans[0].inputs["query"] == {"a": "one", "b": "two"}


def test_a_trace_does_not_export_the_tracking_uri_to_later_subprocesses(mlflow_client, monkeypatch):
    """Tracing points MLflow's exporter at the trail's store but leaves ``MLFLOW_TRACKING_URI`` unset in the
    environment: otherwise every process started afterwards (a live Airflow, the CLI) would write there."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # first: the teardown puts back the session's state
    mlflow.set_tracking_uri("file:///nonexistent-elsewhere")  # as if another store had been in use …
    os.environ.pop("MLFLOW_TRACKING_URI")  # … without its export
    product = f"env-{uuid.uuid4().hex[:6]}"
    t0 = time.time_ns()
    trace_search("ragtrail.search", product, {"q": "q"}, f"{product}__v1", "v1", 5, HITS, t0, t0 + 1_000_000)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == mlflow_client.tracking_uri
    exp = mlflow_client.get_experiment_by_name(experiment_name(f"{product}-search"))
    assert len(_traces(mlflow_client, exp.experiment_id)) == 1  # and the trace still landed in the trail's store


def test_a_search_sampled_out_does_not_import_mlflow(tmp_path):
    """``ragtrail search`` with tracing sampled out answers without importing MLflow (seconds of a CLI call):
    outside a traced call there is no span to nest under, so the sampling decision comes first."""
    import subprocess
    import sys

    code = ("import sys, time\n"
            "from ragtrail.trail.traces import trace_search\n"
            "t = time.time_ns()\n"
            "trace_search('ragtrail.search', 'p', {'q': 'q'}, 'p__v1', 'v1', 1, {'q': []}, t, t)\n"
            "print('mlflow' in sys.modules)\n")
    env = {**os.environ, "RAGTRAIL_TRACE_SAMPLE_RATE": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


FLUSH = """
import sys, time
import mlflow
from ragtrail.trail.traces import flush, trace_search
flush()  # no span in this process: nothing to import, nothing to write
print("IDLE", "mlflow.tracing.processor.base_mlflow" in sys.modules)
t0 = time.time_ns()
trace_search("ragtrail.search", sys.argv[1], {"q": "x"}, None, None, 1, {"q": []}, t0, t0 + 1_000_000)
flush()
print("DONE")
"""


def test_a_task_end_without_spans_imports_no_exporter_and_one_with_spans_writes_them(mlflow_client, tmp_path):
    import subprocess
    import sys

    product = f"hb-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_client.tracking_uri}
    proc = subprocess.run([sys.executable, "-c", FLUSH, product], capture_output=True, text=True, timeout=300,
                          env=env)
    assert "IDLE False" in proc.stdout and "DONE" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    exp = mlflow_client.get_experiment_by_name(experiment_name(f"{product}-search"))
    assert len(list(mlflow_client.search_traces(locations=[exp.experiment_id], max_results=10))) == 1
