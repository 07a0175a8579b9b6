"""The onnx-int8 embedding backend (the default): close to fp32, cached in the data folder, usable end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ingest, write_corpus

from ragtrail.core.settings import load
from ragtrail.stages.embedding import embed_texts
from ragtrail.stages.onnx_backend import model_cache

TEXTS = [
    "A task that fails is retried after the retry delay, up to its number of retries.",
    "XCom is for small values; hand large data between tasks as files in object storage.",
    "The MLflow tracking server stores runs in a backend store and files in an artifact store.",
    "Qdrant keeps points with a vector and a payload in collections; aliases point at collections.",
    "Sourdough rises overnight in a cool kitchen before it is baked in a hot oven.",
    "Die Aufgabe wird nach einer Verzögerung erneut ausgeführt.",
    "ok",
]


def test_onnx_int8_vectors_are_close_to_fp32():
    """onnx-int8 vectors have fp32's dimension, unit length and cosine >= 0.98 on average to fp32's."""
    fp32 = embed_texts(TEXTS, backend="torch")
    int8 = embed_texts(TEXTS, backend="onnx-int8")
    assert int8.shape == fp32.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.mean() >= 0.98 and cosine.min() >= 0.95, cosine
    # The cache the session shares (conftest; a parallel run's workers share the controller's): a worker's own
    # data folder holds no export when another worker made it first.
    cache = model_cache()
    assert list(cache.glob("*-onnx-int8/model_qint8.onnx")), f"export not cached in {cache}"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """Product ``fast`` built with the onnx-int8 backend (two documents)."""
    corpus = write_corpus(tmp_path_factory.mktemp("fast") / "fast", {
        "retries.md": "# Retries\n\nA failed task is retried after retry_delay, up to `retries` times.",
        "baking.md": "# Bread\n\nSourdough rises overnight and is baked in a very hot oven.",
    })
    run = ingest({"source": str(corpus), "product": "fast", "embed_backend": "onnx-int8"})
    return corpus, run


def test_pipeline_with_onnx_backend_builds_a_searchable_version(fast_run):
    """embed_backend=onnx-int8 runs the DAG end to end, is part of the version config, and search uses it."""
    from ragtrail.stages.search import search
    from ragtrail.store import open_store

    corpus, run = fast_run
    assert run["status"] == "FINISHED", run
    assert run["embeddings"] > 0 and run["vectors"] == run["chunks"]
    with open_store(load().qdrant_path) as store:
        meta = store.metadata("fast__v1")
    assert meta["embed_backend"] == "onnx-int8"
    hits = search("fast", "how often is a failing task tried again?", location=load().qdrant_path, k=2)
    assert hits[0]["doc_id"] == "retries.md"
    mixed = ingest({"source": str(corpus), "product": "fast", "embed_backend": "torch"})
    assert mixed["status"] == "FAILED"
    assert any("a new configuration needs a new version" in r for r in mixed["reasons"]), mixed["reasons"]


def test_evaluation_embeds_questions_with_the_collections_backend(fast_run, tmp_path, monkeypatch):
    """Defect 1: the gate embedded questions with torch for an onnx-int8 collection, judging vectors that no
    user query ever gets. Every question the evaluate stage embeds now uses the collection's backend."""
    import ragtrail.stages.embedding
    from ragtrail.stages.gate import evaluate_and_promote

    corpus, run = fast_run
    assert run["status"] == "FINISHED", run
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q1", "text": "how often is a task retried?", "relevant": ["retries.md"]}) + "\n")
    backends = []
    real = ragtrail.stages.embedding.embed_texts

    def spy(texts, embedder=ragtrail.stages.embedding.DEFAULT_EMBEDDER, batch_size=ragtrail.stages.embedding.DEFAULT_BATCH_SIZE,
            backend="torch"):
        backends.append(backend)
        return real(texts, embedder, batch_size, backend=backend)

    monkeypatch.setattr(ragtrail.stages.embedding, "embed_texts", spy)
    decision = evaluate_and_promote(location=load().qdrant_path, product="fast", version="v1", queries_path=queries,
                                    promote=False)
    assert decision["metrics"]["hit_rate"] == 1.0
    assert backends and set(backends) == {"onnx-int8"}, backends
