"""Crash safety: embed, write and index tasks SIGKILLed at 12 points in each of two runs (a fresh build, then an
update), retried by a real scheduler, converge to exactly the index a clean build gives, and leave no
MLflow run RUNNING. Two write groups: the kills land in whichever writer reaches each point first."""

from __future__ import annotations

import pytest
from conftest import ingest, write_corpus
from live_airflow import LiveAirflow

from ragtrail.store import open_store

DOCS = {f"doc{i:02d}.md": f"Document {i} explains topic {i}.\n\n" + " ".join(f"sentence {i}-{j} about item {j}." for j in range(40))
        for i in range(10)}
# Each point fires once per DAG run (a marker in the run's work folder), killing the try that reaches it.
FAULTS = ["embed.start", "embed.after_batch_0", "embed.end", "write.start", "write.after_upsert_1",
          "write.after_upsert_2", "write.after_upsert_3", "write.before_receipt", "index.start", "index.before_delete",
          "index.before_alias", "index.end"]


def view(location, collection):
    with open_store(location) as store:
        return {(str(p.id), p.payload["doc_id"], p.payload["chunk_index"], p.payload["chunk_hash"])
                for p in store.scroll(collection, ["doc_id", "chunk_index", "chunk_hash"])}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("live")
    airflow = LiveAirflow(home, {"RAGTRAIL_TASK_RETRIES": "8", "RAGTRAIL_RETRY_DELAY_S": "1", "RAGTRAIL_UPSERT_BATCH": "4",
                                 "RAGTRAIL_WRITE_TASKS": "2",
                                 "RAGTRAIL_FAILPOINTS": ",".join(FAULTS),
                                 "RAGTRAIL_KEEP_WORK": "1"})  # the fired markers stay in the work folders
    airflow.start("rag_ingest")
    yield airflow
    airflow.stop()


def test_killed_tasks_converge_to_a_clean_build(live, tmp_path):
    """Every kill point fires once, the scheduler retries, and the result equals a clean dag.test build."""
    from mlflow.tracking import MlflowClient

    corpus = write_corpus(tmp_path / "src", DOCS)
    conf = {"source": str(corpus), "product": "faulty", "texts_per_batch": 16, "docs_per_batch": 4}
    run_a = live.trigger("rag_ingest", conf)
    assert live.wait("rag_ingest", run_a) == "success", live.logs()
    tries_a = live.task_tries("rag_ingest", run_a)
    assert tries_a[("index", -1)] == ("success", 5)  # 4 kills, then success
    assert sum(n - 1 for (t, _), (_, n) in tries_a.items() if t == "write") == 5  # the 5 write points
    assert {s for (t, _), (s, _) in tries_a.items() if t == "write"} == {"success"}

    (corpus / "doc03.md").write_text("Document 3 was rewritten entirely. " * 30)
    (corpus / "doc07.md").unlink()
    (corpus / "doc10.md").write_text("A new document about retries and idempotence. " * 20)
    # Run B reaches its kill points afresh: its work folder has no fired markers yet.
    run_b = live.trigger("rag_ingest", conf)
    assert live.wait("rag_ingest", run_b) == "success", live.logs()

    live_qdrant = live.home / "qdrant"
    clean = write_corpus(tmp_path / "clean", {p.name: p.read_bytes() for p in corpus.iterdir()})
    assert ingest({"source": str(clean), "product": "faulty", "texts_per_batch": 16,
                   "docs_per_batch": 4})["status"] == "FINISHED"
    from ragtrail.core.settings import load

    assert view(live_qdrant, "faulty__v1") == view(load().qdrant_path, "faulty__v1")

    client = MlflowClient(f"sqlite:///{live.home / 'mlflow' / 'mlflow.db'}")
    from ragtrail.core.products import experiment_name

    exp = client.get_experiment_by_name(experiment_name("faulty"))
    assert client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") == []
    fired = set()
    for run_id in (run_a, run_b):
        here = {p.name for p in (live.home / "work" / "rag_ingest" / run_id / ".failpoints").iterdir()}
        fired |= here
        parents = client.search_runs([exp.experiment_id], f"tags.`ragtrail.role` = 'parent' and tags.`airflow.run_id` = '{run_id}'")
        assert len(parents) == 1 and parents[0].data.tags["ragtrail.status"] == "FINISHED"
        children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
        index_tries = sorted((int(c.data.tags["airflow.try_number"]), c.info.status) for c in children
                             if c.data.tags["airflow.task_id"] == "index")
        kills = len(index_tries) - 1
        assert kills >= 4 and index_tries == [(t, "KILLED") for t in range(1, kills + 1)] + [(kills + 1, "FINISHED")]
        # embed is mapped: one run for all its map indexes and tries, closed FINISHED by the roll-up; each map
        # index's successful try is its map_try step, so the kills show as tries past the first
        (embed,) = [c for c in children if c.data.tags["airflow.task_id"] == "embed"]
        assert embed.info.status == "FINISHED" and embed.data.tags["ragtrail.failed_indexes"] == "-"
        tries = {}
        for m in sorted(client.get_metric_history(embed.info.run_id, "map_try"), key=lambda m: m.timestamp):
            tries[m.step] = m.value
        assert sum(t - 1 for t in tries.values()) == 3, tries  # start, after the first batch, at the end
        # write too: its kills are its map indexes' tries past the first, whichever group each hit
        (write,) = [c for c in children if c.data.tags["airflow.task_id"] == "write"]
        assert write.info.status == "FINISHED" and write.data.tags["ragtrail.failed_indexes"] == "-"
        tries = {}
        for m in sorted(client.get_metric_history(write.info.run_id, "map_try"), key=lambda m: m.timestamp):
            tries[m.step] = m.value
        assert sum(t - 1 for t in tries.values()) == sum(f.startswith("write.") for f in here), (tries, here)
    assert fired == set(FAULTS)
