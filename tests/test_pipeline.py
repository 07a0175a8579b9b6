"""End to end: the real rag_ingest DAG, model, Qdrant local store and MLflow store agree with each other."""

from __future__ import annotations

import json
from collections import defaultdict

from conftest import HANDBOOK_CONF, child_runs_of, dump, ingest, run_cli, write_corpus

from ragtrail.core.settings import DEFAULT_CHUNK_SIZE, SAMPLE_CORPUS

REQUIRED_METRICS = {
    "preflight": set(),  # checks only: source readable, connection known, store answering
    "split": {"shards", "keys_listed"},
    "ingest": {"docs_seen", "docs_parsed", "docs_failed", "bytes_in"},
    "plan": {"docs_added", "docs_updated", "docs_unchanged", "docs_deleted"},
    "chunk": {"chunk_count", "avg_chunk_tokens", "min_chunk_tokens", "max_chunk_tokens", "total_tokens",
              "chunks_per_document", "truncated_chunks"},
    "dedupe": {"duplicate_rate", "embeddings_skipped", "unique_new_texts"},
    "embed": {"embedding_count", "embedding_dimension", "embeddings_per_second", "processing_time_seconds"},
    "write": {"points_written", "docs_written", "docs_skipped", "stale_points"},
    "index": {"vector_count", "upsert_seconds", "vectors_added", "vectors_deleted"},
    "evaluate": {"ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10", "mrr_at_10", "hit_rate",
                 "latency_p50_ms", "latency_p95_ms", "promoted"},
}


def by_stage(runs) -> dict[str, list]:
    out = defaultdict(list)
    for run in runs:
        out[run.data.tags["ragtrail.stage"]].append(run)
    return out


def per_step(client, run, metric: str) -> dict[int, float]:
    """A metric per step (a mapped task's run: step = map index), the latest value of each."""
    out = {}
    for m in sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.timestamp):
        out[m.step] = m.value
    return out


def total(client, runs, metric: str) -> float:
    """Summed over runs and, on a mapped task's run, over its map indexes' steps."""
    return sum(sum(per_step(client, r, metric).values()) for r in runs)


def test_one_parent_and_a_finished_child_per_task(handbook_run, mlflow_client):
    """A DAG run leaves one parent and one FINISHED child per task (a mapped task's map indexes share it, each
    one's figures a metric step: step = map index), with the stage's metrics."""
    parent = mlflow_client.get_run(handbook_run["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["ragtrail.status"] == "FINISHED"
    assert parent.data.tags["airflow.run_id"] == handbook_run["run_id"]
    assert parent.data.params["product"] == "handbook" and parent.data.params["chunk_size"] == str(DEFAULT_CHUNK_SIZE)
    parents = mlflow_client.search_runs(
        [handbook_run["experiment_id"]],
        f"tags.`ragtrail.role` = 'parent' and tags.`airflow.run_id` = '{handbook_run['run_id']}'")
    assert len(parents) == 1, "exactly one parent per DAG run"

    stages = by_stage(child_runs_of(mlflow_client, handbook_run))
    assert set(stages) == set(REQUIRED_METRICS), dump(list(stages))
    # 222 chunks since chunks follow sections (issue 29), so 4 embed tasks of up to 60 texts.
    assert {s: len(r) for s, r in stages.items()} == {s: 1 for s in REQUIRED_METRICS}, "one run per task"
    assert [r.info.run_name for r in stages["chunk"]] == ["chunk"]
    for stage, runs in stages.items():
        for child in runs:
            tags = child.data.tags
            assert child.info.status == "FINISHED", child.info.run_name
            assert REQUIRED_METRICS[stage] <= set(child.data.metrics), (stage, sorted(child.data.metrics))
            assert tags["airflow.dag_id"] == "rag_ingest" and tags["airflow.task_id"] == stage
            assert tags.get("ragtrail.mapped") == "true" if stage in ("ingest", "chunk", "embed", "write") else \
                tags["airflow.try_number"] == "1"
            assert tags["ragtrail.product"] == "handbook" and tags["ragtrail.version"] == "v1"
    # 34 docs / 12 per batch; 222 texts / 60: 3 chunk and 4 embed map indexes, each a step, all on try 1
    assert per_step(mlflow_client, stages["chunk"][0], "map_ok") == {0: 1.0, 1: 1.0, 2: 1.0}
    assert per_step(mlflow_client, stages["embed"][0], "map_try") == {0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0}
    assert stages["chunk"][0].data.tags["ragtrail.failed_indexes"] == "-"
    assert stages["embed"][0].data.params["embedder_name"] == "all-MiniLM-L6-v2"
    assert stages["index"][0].data.params["collection"] == "handbook__v1"


def test_metrics_are_consistent_with_qdrant(handbook_run, mlflow_client, qdrant):
    """Σ chunk_count = vector_count = points in Qdrant; Σ embedding_count = distinct new texts; no truncation."""
    stages = by_stage(child_runs_of(mlflow_client, handbook_run))
    with qdrant() as store:
        points = store.count("handbook")  # through the alias
    index = stages["index"][0].data.metrics
    dedupe = stages["dedupe"][0].data.metrics
    assert points == index["vector_count"] == handbook_run["vectors"] == total(mlflow_client, stages["chunk"],
                                                                                 "chunk_count")
    assert total(mlflow_client, stages["embed"], "embedding_count") == dedupe["unique_new_texts"]
    assert dedupe["chunks_in"] - dedupe["embeddings_skipped"] == dedupe["unique_new_texts"]
    assert total(mlflow_client, stages["chunk"], "truncated_chunks") == 0
    assert max(per_step(mlflow_client, stages["chunk"][0], "max_chunk_tokens").values()) <= DEFAULT_CHUNK_SIZE
    assert stages["embed"][0].data.metrics["embedding_dimension"] == 384
    ingest_m = stages["ingest"][0].data.metrics
    assert ingest_m["docs_parsed"] == handbook_run["docs"] >= 30 and ingest_m["docs_failed"] == 0
    assert stages["plan"][0].data.metrics["docs_added"] == handbook_run["docs"]


def test_artifacts_sample_and_manifest(handbook_run, mlflow_client, tmp_path):
    """Chunk runs carry a chunk sample; the index run a manifest doc → chunk ids → point ids."""
    stages = by_stage(child_runs_of(mlflow_client, handbook_run))
    sample_path = mlflow_client.download_artifacts(stages["chunk"][0].info.run_id, "chunk_sample.json", str(tmp_path))
    sample = json.loads(open(sample_path).read())
    assert sample and all(s["text"] and s["n_tokens"] > 0 for s in sample)
    manifest_path = mlflow_client.download_artifacts(stages["index"][0].info.run_id, "index/index_manifest.jsonl",
                                                     str(tmp_path))
    rows = [json.loads(line) for line in open(manifest_path)]
    assert len(rows) == handbook_run["docs"]
    point_ids = [c["point_id"] for r in rows for c in r["chunks"]]
    assert len(point_ids) == len(set(point_ids)) == handbook_run["vectors"]
    ingest_manifest = mlflow_client.download_artifacts(stages["ingest"][0].info.run_id, "ingest/manifest.jsonl",
                                                       str(tmp_path))
    assert all(json.loads(line)["sha256"] for line in open(ingest_manifest))


def test_mlflow_run_link_points_at_the_task_run(handbook_run, mlflow_client):
    """Each tracked task (each map index too) stores its "MLflow run" link URL; it opens that task's run (a
    map index: its task's one run)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    runs = {}
    for c in child_runs_of(mlflow_client, handbook_run):
        if c.data.tags.get("ragtrail.mapped") == "true":
            runs.update({(c.data.tags["airflow.task_id"], i): c.info.run_id
                         for i in per_step(mlflow_client, c, "map_ok")})
        else:
            runs[(c.data.tags["airflow.task_id"], int(c.data.tags["airflow.map_index"]))] = c.info.run_id
    assert ("embed", 3) in runs
    with create_session() as session:
        for (task_id, map_index), mlflow_run_id in runs.items():
            query = XComModel.get_many(run_id=handbook_run["run_id"], key="_link_MLflowRunLink", task_ids=task_id,
                                       dag_ids="rag_ingest", map_indexes=map_index)
            url = XComModel.deserialize_value(session.scalars(query).first())
            assert url == f"http://127.0.0.1:5000/#/experiments/{handbook_run['experiment_id']}/runs/{mlflow_run_id}?workflowType=machine_learning"


def test_reingest_unchanged_embeds_nothing_and_keeps_the_same_points(handbook_run, qdrant, mlflow_client):
    """Ingesting the same corpus again: 0 embeddings, every document unchanged, the same point ids, and
    both ingest runs show the same source dataset digest in MLflow."""
    with qdrant() as store:
        before = {p.id for p in store.scroll("handbook", [])}
    again = ingest(HANDBOOK_CONF)
    assert again["status"] == "FINISHED", again
    assert again["embeddings"] == 0 and again["chunks"] == 0
    assert again["docs_unchanged"] == handbook_run["docs"] and again["docs_added"] == again["docs_updated"] == 0
    with qdrant() as store:
        after = {p.id for p in store.scroll("handbook", [])}
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
    assert summary["reasons"][0].startswith("chunk[0]: failed (ValueError: chunk_size must be"), summary["reasons"]
    stages = by_stage(child_runs_of(mlflow_client, summary))
    assert stages["ingest"][0].info.status == stages["plan"][0].info.status == "FINISHED"
    (chunk,) = stages["chunk"]
    assert chunk.info.status == "FAILED" and chunk.data.tags["ragtrail.error"].startswith("chunk[0]: ValueError")
    assert chunk.data.tags["ragtrail.failed_indexes"] == "0"  # the failed map index, named on the task's run
    assert chunk.data.tags["ragtrail.map_error.0"].startswith("ValueError: chunk_size must be between 1 and 254")
    assert stages["index"][0].info.status == "FAILED"  # all_done: it ran, found nothing to publish, refused
    assert "embed" not in stages  # never started: nothing to embed
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FAILED" and parent.data.tags["ragtrail.status"] == "FAILED"
    running = mlflow_client.search_runs([summary["experiment_id"]], "attributes.status = 'RUNNING'")
    assert running == []


def test_json_output_has_the_documented_keys(handbook_run):
    """`ragtrail ingest --json` carries status, counts, run ids and duration."""
    for key in ("status", "product", "version", "docs", "chunks", "vectors", "parent_run_id",
                "experiment_id", "duration_s"):
        assert handbook_run.get(key) is not None, key


def test_the_trail_does_not_grow_with_the_corpus(tmp_path, mlflow_client):
    """One run per task whatever the corpus: 4 and 24 one-line documents at one per ingest shard, chunk and embed
    task (4 vs 24 map indexes each) leave the same number of MLflow runs; each map index is a step and a row."""
    counts = {}
    for n in (4, 24):
        corpus = write_corpus(tmp_path / f"c{n}", {f"d{i}.txt": f"one line number {i} of {n}" for i in range(n)})
        summary = ingest({"source": str(corpus), "product": f"size{n}", "docs_per_shard": 1, "docs_per_batch": 1,
                          "texts_per_batch": 1})
        assert summary["status"] == "FINISHED", summary
        runs = child_runs_of(mlflow_client, summary)
        counts[n] = len(runs)
        (chunk,) = [r for r in runs if r.data.tags["airflow.task_id"] == "chunk"]
        assert sorted(per_step(mlflow_client, chunk, "map_ok")) == list(range(n))
        (shards,) = [r for r in runs if r.data.tags["airflow.task_id"] == "ingest"]
        assert sorted(per_step(mlflow_client, shards, "docs_parsed").values()) == [1.0] * n
        table = json.loads(open(mlflow_client.download_artifacts(chunk.info.run_id, "map_indexes.json",
                                                                 str(tmp_path / f"t{n}"))).read())
        assert sorted(table["data"], key=lambda row: row[0])[-1][0] == n - 1 and len(table["data"]) == n
    assert counts[4] == counts[24] == len(REQUIRED_METRICS), counts
