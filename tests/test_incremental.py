"""Incremental, idempotent indexing: only what changed is embedded; versions switch atomically."""

from __future__ import annotations

import json

import pytest
from conftest import ingest, run_cli, write_corpus

from ragtrail.store import list_versions

UNTRACED = {"RAGTRAIL_TRACE_SAMPLE_RATE": "0"}  # searches here are about the index, not their traces (spares MLflow's import)

BASE = {
    "airflow.md": "Airflow schedules DAGs of tasks and retries them after failures.\n\nThe scheduler queues work.",
    "mlflow.md": "MLflow records experiments, runs, params, metrics and artifacts for every training job.",
    "qdrant.txt": "Qdrant stores vectors in collections and answers nearest-neighbour queries quickly.",
    "walrus.txt": "The walrus colony on the northern ice shelf counts exactly four hundred and twelve animals.",
    "tokens.html": "<html><body><p>Tokenizers split text into word pieces before a transformer reads it.</p></body></html>",
}


def point_view(qdrant, collection: str) -> set[tuple]:
    """What a build must agree on: each point's id, document, position and content."""
    with qdrant() as store:
        return {(str(p.id), p.payload["doc_id"], p.payload["chunk_index"], p.payload["chunk_hash"], p.payload["doc_hash"])
                for p in store.scroll(collection, ["doc_id", "chunk_index", "chunk_hash", "doc_hash"])}


@pytest.fixture(scope="module")
def changed_run(tmp_path_factory):
    """Build product `inc`, then edit one document, delete one and add one, and ingest again."""
    root = tmp_path_factory.mktemp("inc")
    corpus = write_corpus(root / "src", BASE)
    first = ingest({"source": str(corpus), "product": "inc"})
    (corpus / "airflow.md").write_text(BASE["airflow.md"] + "\n\nPools cap how many tasks use one resource.")
    (corpus / "walrus.txt").unlink()
    (corpus / "new.md").write_text("Deterministic point ids make every upsert idempotent.")
    second = ingest({"source": str(corpus), "product": "inc"})
    return first, second, corpus


def test_only_changed_documents_are_processed(changed_run):
    """Edit one, delete one, add one: 1 updated, 1 deleted, 1 added, 3 unchanged; only 2 documents chunked."""
    first, second, _ = changed_run
    assert first["status"] == second["status"] == "FINISHED"
    assert (second["docs_added"], second["docs_updated"], second["docs_unchanged"], second["docs_deleted"]) == (1, 1, 3, 1)
    assert second["chunks"] == 2 and second["embeddings"] == 2
    assert second["vectors"] == first["vectors"]  # +1 added, -1 deleted, the edited doc still one chunk


def test_incremental_result_equals_a_clean_build(changed_run, qdrant, tmp_path):
    """The updated index holds exactly the points a from-scratch build of the new source holds."""
    _, _, corpus = changed_run
    clean = write_corpus(tmp_path / "clean", {p.name: p.read_bytes() for p in corpus.iterdir()})
    ingest({"source": str(clean), "product": "inc", "version": "clean"})
    assert point_view(qdrant, "inc__v1") == point_view(qdrant, "inc__clean")


def test_deleted_document_is_no_longer_found(changed_run):
    """Search does not return the deleted document's text any more."""
    proc = run_cli("search", "--product", "inc", "--json", "-k", "3", "how many walruses live on the ice shelf?",
                   env=UNTRACED)
    assert proc.returncode == 0, proc.stderr
    assert "walrus.txt" not in [h["doc_id"] for h in json.loads(proc.stdout)]


def test_incremental_sync_mode_keeps_missing_documents(tmp_path, qdrant):
    """sync_mode=incremental: a document gone from the source stays in the index."""
    corpus = write_corpus(tmp_path / "src", {"a.md": "Alpha document text.", "b.md": "Beta document text."})
    ingest({"source": str(corpus), "product": "keep"})
    (corpus / "b.md").unlink()
    run = ingest({"source": str(corpus), "product": "keep", "sync_mode": "incremental"})
    assert run["docs_deleted"] == 0 and run["vectors"] == 2
    assert {v[1] for v in point_view(qdrant, "keep__v1")} == {"a.md", "b.md"}


def test_duplicate_texts_are_embedded_once(tmp_path):
    """A corpus of heavy duplication: each distinct chunk text is embedded exactly once, all points written."""
    shared = "Every distinct chunk is embedded once, however often it repeats across the corpus."
    files = {f"copy{i}.md": shared for i in range(8)} | {"unique.md": "A single unique document."}
    run = ingest({"source": str(write_corpus(tmp_path / "dup", files)), "product": "dups"})
    assert run["status"] == "FINISHED"
    assert run["chunks"] == 9 and run["embeddings"] == 2 and run["vectors"] == 9


def test_version_switch_and_promote(tmp_path, qdrant):
    """v2 built beside live v1 stays dark until promoted; promote moves searches over and back."""
    corpus = write_corpus(tmp_path / "src", BASE)
    ingest({"source": str(corpus), "product": "ver"})

    def live_version():
        proc = run_cli("search", "--product", "ver", "--json", "-k", "1", "vector database collections", env=UNTRACED)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)[0]["version"]

    dark = ingest({"source": str(corpus), "product": "ver", "version": "v2", "chunk_size": 16, "chunk_overlap": 4,
                   "promote": False})
    assert dark["status"] == "FINISHED" and dark["live_collection"] == "ver__v1"
    assert live_version() == "v1"
    assert run_cli("promote", "--product", "ver", "--version", "v2").returncode == 0
    assert live_version() == "v2"
    assert run_cli("promote", "--product", "ver", "--version", "v1").returncode == 0
    assert live_version() == "v1"
    listed = json.loads(run_cli("versions", "--product", "ver", "--json").stdout)
    assert {v["version"]: v["live"] for v in listed} == {"v1": True, "v2": False}
    assert run_cli("promote", "--product", "ver", "--version", "nope").returncode == 1


def test_new_config_in_an_old_version_is_refused(tmp_path):
    """A version is one configuration: a different chunk size under the same version fails the plan clearly."""
    corpus = write_corpus(tmp_path / "src", {"a.md": "Some text."})
    ingest({"source": str(corpus), "product": "cfg"})
    run = ingest({"source": str(corpus), "product": "cfg", "chunk_size": 100})
    assert run["status"] == "FAILED"
    assert any("a new configuration needs a new version" in r for r in run["reasons"]), run["reasons"]


def test_old_versions_are_pruned(tmp_path, qdrant):
    """keep_versions=1: besides the live version only the newest older one survives."""
    corpus = write_corpus(tmp_path / "src", {"a.md": "Pruning keeps the store small."})
    for version in ("p1", "p2", "p3"):
        assert ingest({"source": str(corpus), "product": "prune", "version": version, "keep_versions": 1})["status"] == "FINISHED"
    with qdrant() as store:
        versions = {v["version"]: v["live"] for v in list_versions(store, "prune")}
    assert versions == {"p3": True, "p2": False}
