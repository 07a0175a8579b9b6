"""End to end: the real rag_ingest DAG, model, Qdrant local store and MLflow store agree with each other."""

from __future__ import annotations

import json

from conftest import child_runs_of, dump, ingest, run_cli, write_corpus

from ragtrail.settings import SAMPLE_CORPUS

STAGES = {"ingest", "chunk", "embed", "index"}
REQUIRED_METRICS = {
    "ingest": {"docs_seen", "docs_parsed", "docs_failed", "bytes_in"},
    "chunk": {"chunk_count", "avg_chunk_tokens", "min_chunk_tokens", "max_chunk_tokens", "total_tokens",
              "chunks_per_document", "truncated_chunks"},
    "embed": {"embedding_count", "embedding_dimension", "embeddings_per_second", "processing_time_seconds"},
    "index": {"vector_count", "upsert_seconds"},
}


def test_one_parent_four_finished_children(handbook_run, mlflow_client):
    """A DAG run leaves one parent run and one FINISHED child per stage, with the stage's metrics."""
    parent = mlflow_client.get_run(handbook_run["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ragtrail.status"] == "FINISHED"
    assert parent.data.tags["airflow.run_id"] == handbook_run["run_id"]
    assert parent.data.params["product"] == "handbook" and parent.data.params["chunk_size"] == "200"
    parents = mlflow_client.search_runs(
        [handbook_run["experiment_id"]],
        f"tags.`ragtrail.role` = 'parent' and tags.`airflow.run_id` = '{handbook_run['run_id']}'")
    assert len(parents) == 1, "exactly one parent per DAG run"

    children = child_runs_of(mlflow_client, handbook_run)
    assert {c.info.run_name for c in children} == STAGES and len(children) == 4, dump([c.info for c in children])
    for child in children:
        stage = child.info.run_name
        tags = child.data.tags
        assert child.info.status == "FINISHED", stage
        assert REQUIRED_METRICS[stage] <= set(child.data.metrics), (stage, sorted(child.data.metrics))
        assert tags["airflow.dag_id"] == "rag_ingest" and tags["airflow.task_id"] == stage
        assert tags["airflow.try_number"] == "1" and tags["airflow.map_index"] == "-1"
        assert tags["ragtrail.product"] == "handbook" and tags["ragtrail.version"] == "v1"
    embed = next(c for c in children if c.info.run_name == "embed")
    assert embed.data.params["embedder_name"] == "all-MiniLM-L6-v2"
    index = next(c for c in children if c.info.run_name == "index")
    assert index.data.params["collection"] == "handbook__v1"


def test_metrics_are_consistent_with_qdrant(handbook_run, mlflow_client, qdrant):
    """chunk_count = embedding_count = vector_count = points in Qdrant; no chunk exceeds the model window."""
    metrics = {c.info.run_name: c.data.metrics for c in child_runs_of(mlflow_client, handbook_run)}
    with qdrant() as client:
        points = client.count("handbook", exact=True).count  # through the alias
    assert points == metrics["index"]["vector_count"] == handbook_run["vectors"]
    assert metrics["chunk"]["chunk_count"] == metrics["embed"]["embedding_count"] == points
    assert metrics["chunk"]["truncated_chunks"] == 0
    assert metrics["chunk"]["max_chunk_tokens"] <= 200
    assert metrics["embed"]["embedding_dimension"] == 384
    assert metrics["ingest"]["docs_parsed"] == handbook_run["docs"] >= 30
    assert metrics["ingest"]["docs_failed"] == 0


def test_artifacts_sample_and_manifest(handbook_run, mlflow_client, tmp_path):
    """The chunk run carries a chunk sample; the index run a manifest doc → chunk ids → point ids."""
    runs = {c.info.run_name: c for c in child_runs_of(mlflow_client, handbook_run)}
    sample_path = mlflow_client.download_artifacts(runs["chunk"].info.run_id, "chunk_sample.json", str(tmp_path))
    sample = json.loads(open(sample_path).read())
    assert sample and all(s["text"] and s["n_tokens"] > 0 for s in sample)
    manifest_path = mlflow_client.download_artifacts(runs["index"].info.run_id, "index/index_manifest.jsonl",
                                                     str(tmp_path))
    rows = [json.loads(line) for line in open(manifest_path)]
    assert len(rows) == handbook_run["docs"]
    point_ids = [c["point_id"] for r in rows for c in r["chunks"]]
    assert len(point_ids) == len(set(point_ids)) == handbook_run["vectors"]
    ingest_manifest = mlflow_client.download_artifacts(runs["ingest"].info.run_id, "ingest/manifest.jsonl",
                                                       str(tmp_path))
    assert all(json.loads(line)["sha256"] for line in open(ingest_manifest))


def test_reingest_leaves_the_same_points(handbook_run, qdrant, mlflow_client):
    """Ingesting the same corpus again upserts onto the same deterministic ids: the point set is unchanged,
    and both ingest runs show the same source dataset digest in MLflow."""
    with qdrant() as client:
        before = {p.id for p in client.scroll("handbook", limit=10_000, with_payload=False)[0]}
    again = ingest({"source": str(SAMPLE_CORPUS), "product": "handbook"})
    assert again["status"] == "FINISHED"
    with qdrant() as client:
        after = {p.id for p in client.scroll("handbook", limit=10_000, with_payload=False)[0]}
    assert after == before and again["vectors"] == handbook_run["vectors"]
    datasets = []
    for summary in (handbook_run, again):
        (ingest_run,) = [c for c in child_runs_of(mlflow_client, summary) if c.info.run_name == "ingest"]
        (dataset_input,) = ingest_run.inputs.dataset_inputs
        datasets.append(dataset_input.dataset)
    assert datasets[0].digest == datasets[1].digest and len(datasets[0].digest) == 16
    assert datasets[0].source_type == "local" and str(SAMPLE_CORPUS) in datasets[0].source


def test_failed_stage_fails_the_run(tmp_path, mlflow_client):
    """A stage that raises: its run FAILED, roll-up FAILED, DAG run failed, nothing RUNNING, CLI exit 1."""
    corpus = write_corpus(tmp_path / "c", {"a.md": "Airflow retries failed tasks.", "b.txt": "MLflow logs runs."})
    # chunk_size above the model's 254-token window is refused by the chunk stage itself.
    proc = run_cli("ingest", "--source", str(corpus), "--product", "broken", "--chunk-size", "400", "--json")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)  # stdout holds exactly one JSON document
    assert summary["status"] == "FAILED" and summary["dag_run_state"] == "failed"
    assert "chunk_size must be between 1 and 254" in proc.stderr
    assert any(r.startswith("chunk: failed") for r in summary["reasons"]), summary["reasons"]
    runs = {c.info.run_name: c for c in child_runs_of(mlflow_client, summary)}
    assert runs["ingest"].info.status == "FINISHED" and runs["chunk"].info.status == "FAILED"
    assert "ValueError" in runs["chunk"].data.tags["ragtrail.error"]
    assert "embed" not in runs and "index" not in runs  # never started: upstream failed
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["ragtrail.status"] == "FAILED"
    running = mlflow_client.search_runs([summary["experiment_id"]], "attributes.status = 'RUNNING'")
    assert running == []


def test_json_output_has_the_documented_keys(handbook_run):
    """`ragtrail ingest --json` carries status, counts, run ids and duration."""
    for key in ("status", "product", "version", "docs", "chunks", "vectors", "parent_run_id",
                "experiment_id", "duration_s"):
        assert handbook_run.get(key) is not None, key


def test_mlflow_run_link_points_at_the_task_run(handbook_run, mlflow_client):
    """Each tracked task stores its "MLflow run" link URL; it opens that task's child run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    runs = {c.info.run_name: c.info.run_id for c in child_runs_of(mlflow_client, handbook_run)}
    with create_session() as session:
        for task_id in ("ingest", "chunk", "embed", "index"):
            query = XComModel.get_many(run_id=handbook_run["run_id"], key="_link_MLflowRunLink",
                                       task_ids=task_id, dag_ids="rag_ingest")
            url = XComModel.deserialize_value(session.scalars(query).first())
            assert url == f"http://127.0.0.1:5000/#/experiments/{handbook_run['experiment_id']}/runs/{runs[task_id]}"
