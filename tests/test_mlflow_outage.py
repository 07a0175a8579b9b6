"""A real `mlflow server` stopped in the middle of a pipeline run and started again.

The server is stopped from inside a stage (a hook around the stage function: the only way to pick
the moment), so the outage hits real HTTP calls of the tracking layer at a known point.
"""

from __future__ import annotations

import functools

import pytest
from conftest import ingest, write_corpus
from servers import mlflow_server

DOCS = {"a.md": "Airflow retries failed tasks.", "b.txt": "MLflow logs runs.", "c.md": "Qdrant serves vectors."}


@pytest.fixture(scope="module")
def mlflow(tmp_path_factory):
    srv = mlflow_server(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


@pytest.fixture()
def server(mlflow, monkeypatch):
    """The module's server, up, as this test's tracking URI."""
    if mlflow.proc is None:
        mlflow.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow.url)
    return mlflow


def hook(monkeypatch, module, name: str, before=None, after=None) -> None:
    """Run ``before`` / ``after`` around ``module.name`` (looked up when the task body runs)."""
    real = getattr(module, name)

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        if before:
            before()
        try:
            return real(*args, **kwargs)
        finally:
            if after:
                after()

    monkeypatch.setattr(module, name, wrapper)


def runs_by_task(client, summary: dict) -> dict:
    exp = client.get_experiment_by_name(f"ragtrail - {summary['product']} ({_pid(summary['product'])})")
    runs = client.search_runs([exp.experiment_id], "tags.`ragtrail.role` = 'task'")
    return exp.experiment_id, {r.data.tags["airflow.task_id"]: r for r in runs}


def _pid(product: str) -> str:
    from ragtrail.core.products import product_id

    return product_id(product)[:8]


def test_lenient_the_pipeline_finishes_and_the_trail_says_what_is_missing(server, tmp_path, monkeypatch):
    """Server stops while `chunk` runs and is back after `embed`: the data pipeline is FINISHED, `chunk`'s
    run (shared by its map indexes, left RUNNING as always until the roll-up) is closed by the roll-up without
    `chunk[0]`'s figures, `dedupe` and `embed[0]` have no run, and the roll-up says so; nothing stays RUNNING."""
    from mlflow.tracking import MlflowClient

    import ragtrail.stages.chunking
    import ragtrail.stages.embedding

    monkeypatch.delenv("RAGTRAIL_TRACKING_MODE", raising=False)  # lenient is the default
    hook(monkeypatch, ragtrail.stages.chunking, "chunk_documents", before=server.stop)
    hook(monkeypatch, ragtrail.stages.embedding, "embed_chunks", after=server.start)
    corpus = write_corpus(tmp_path / "c", DOCS)
    summary = ingest({"source": str(corpus), "product": "outage-lenient"})

    assert summary["status"] == "FINISHED" and summary["dag_run_state"] == "success"
    assert summary["vectors"] == 3  # the data went all the way to the index
    assert summary["trail"]["complete"] is False
    assert summary["trail"]["missing_runs"] == ["chunk[0]", "dedupe", "embed[0]"]
    assert summary["trail"]["closed_runs"] == []  # closing a mapped task's run is the roll-up's job
    client = MlflowClient(server.url)
    exp_id, runs = runs_by_task(client, summary)
    assert set(runs) == {"preflight", "split", "ingest", "plan", "chunk", "write", "index", "evaluate"}
    assert runs["chunk"].info.status == "FINISHED" and runs["chunk"].data.tags["ragtrail.closed_by"] == "aggregate_status"
    assert client.search_runs([exp_id], "attributes.status = 'RUNNING'") == []
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["ragtrail.status"] == "FINISHED"
    assert parent.data.tags["ragtrail.trail"] == "incomplete" and parent.data.tags["ragtrail.trail_missing"] == "chunk[0], dedupe, embed[0]"


def test_strict_the_first_failing_task_fails_naming_the_tracking_uri(server, tmp_path, monkeypatch, capfd):
    """Strict: `chunk` cannot close its run and fails with one error naming the URI; nothing downstream publishes;
    the server is back for the roll-up, which closes the run FAILED and fails the DAG run."""
    from mlflow.tracking import MlflowClient

    import ragtrail.stages.chunking
    import ragtrail_airflow.rag.aggregate

    monkeypatch.setenv("RAGTRAIL_TRACKING_MODE", "strict")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_RETRIES", "1")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_BACKOFF_S", "0.2")
    hook(monkeypatch, ragtrail.stages.chunking, "chunk_documents", before=server.stop)
    hook(monkeypatch, ragtrail_airflow.rag.aggregate, "aggregate_status", before=server.start)
    corpus = write_corpus(tmp_path / "c", DOCS)
    summary = ingest({"source": str(corpus), "product": "outage-strict"})

    assert summary["status"] == "FAILED" and summary["dag_run_state"] == "failed"
    assert summary["reasons"][0].startswith("chunk[0]: failed")
    tasks = summary["tasks"]
    assert tasks["ingest[0]"] == tasks["plan"] == "FINISHED" and tasks["chunk[0]"] == "FAILED"
    assert tasks["index"] != "FINISHED" and tasks["embed"] == "UPSTREAM_FAILED"
    out = capfd.readouterr()
    logs = out.out + out.err
    assert f"TrackingUnavailable: MLflow tracking at {server.url} is unavailable" in logs
    assert "strict tracking mode (RAGTRAIL_TRACKING_MODE=strict) fails the task" in logs
    client = MlflowClient(server.url)
    exp_id, runs = runs_by_task(client, summary)
    assert runs["chunk"].info.status == "FAILED" and set(runs) == {"preflight", "split", "ingest", "plan", "chunk"}
    assert client.search_runs([exp_id], "attributes.status = 'RUNNING'") == []
    assert client.get_run(summary["parent_run_id"]).info.status == "FAILED"
