"""The gate measures every retrieval mode: a version configured dense, asked about rare exact part numbers that
only BM25 matches, is judged in dense mode (as configured), and the decision names the mode that beat it.

Real stages end to end: ingest → chunk → embed (the real model) → index into a Qdrant Edge store → gate."""

from __future__ import annotations

import json

import pytest

from ragtrail.core.recorder import Recorder
from ragtrail.stages import gate
from ragtrail.stages.chunking import chunk_documents
from ragtrail.stages.embedding import embed_chunks
from ragtrail.stages.indexing import index_run
from ragtrail.stages.ingest import ingest_source
from ragtrail.store import StoreSettings, open_store
from ragtrail.trail.names import BETTER_MODE_TAG, GATE_REASON_TAG, MODE_METRICS, mode_metric

# Same wording everywhere but one made-up part number, the numbers anagrams of each other: meaning (and the
# embedding's sub-word pieces) cannot tell the documents apart, exact words can.
PARTS = ("QX4827153", "QX4827135", "QX4821753", "QX4872153", "QX4287153", "QX8427153", "QX4827513",
         "QX4827351", "QX7482153", "QX4812753")
CONFIG = {"chunk_size": 254, "chunk_overlap": 0, "embedder": "all-MiniLM-L6-v2", "embed_backend": "torch",
          "retrieval_mode": "dense", "fusion": "rrf"}


def build(root, config: dict, version: str = "v1"):
    corpus = root / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, part in enumerate(PARTS):
        (corpus / f"part{i}.md").write_text(f"# Spare part\n\nSpare part {part} fits the pump housing. "
                                            "Order it from the usual supplier and fit it with the standard tools.\n")
    (root / "q.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "text": part, "relevant": [f"part{i}.md"]}) + "\n"
                                          for i, part in enumerate(PARTS)))
    location = StoreSettings(path=str(root / "store"), kind="edge")
    work = root / f"work-{version}"
    docs = ingest_source(str(corpus), work)
    chunks = chunk_documents(docs["docs_path"], work, product="parts")
    embedded = embed_chunks(chunks["chunks_path"], work, backend="torch")
    index_run(location=location, product="parts", version=version, config=config,
              chunk_paths=[chunks["chunks_path"]], embedded=[embedded], deleted_docs=[], workdir=work)
    return location, root / "q.jsonl"


@pytest.fixture(scope="module")
def dense_version(tmp_path_factory):
    return build(tmp_path_factory.mktemp("gate-modes"), CONFIG)


def test_each_mode_is_measured_and_the_better_one_is_named_without_changing_the_configured_mode(dense_version):
    location, questions = dense_version
    rec = Recorder()
    decision = gate.evaluate_and_promote(location=location, product="parts", version="v1", queries_path=questions,
                                         tolerance=0.02, recorder=rec)
    modes = decision["modes"]
    assert set(modes) == {"dense", "sparse", "hybrid"}
    for mode in modes:
        for metric in MODE_METRICS:
            assert rec.metrics[mode_metric(metric, mode)] == pytest.approx(modes[mode][metric])
    # judged as configured: the run's headline metrics are dense mode's
    assert decision["retrieval_mode"] == "dense"
    assert rec.metrics["ndcg_at_10"] == pytest.approx(modes["dense"]["ndcg_at_10"])
    # exact part numbers: BM25 finds every one first; dense does not
    assert modes["sparse"]["ndcg_at_10"] == pytest.approx(1.0)
    assert modes["sparse"]["ndcg_at_10"] > modes["dense"]["ndcg_at_10"] + 0.02, modes
    assert decision["better_mode"] in ("sparse", "hybrid")
    assert rec.tags[BETTER_MODE_TAG] == decision["better_mode"]
    assert f"{decision['better_mode']} mode beats the configured dense mode" in rec.tags[GATE_REASON_TAG]
    table = rec.tables["eval/modes.json"]
    assert [r["mode"] for r in table] == ["dense", "sparse", "hybrid"]
    assert [r["configured"] for r in table] == [True, False, False] and table[2]["fusion"] == "rrf"
    assert [r["sparse_weight"] for r in table] == [None, None, decision["sparse_weight"]]
    with open_store(location) as store:  # the configured mode stays what the run spec said
        assert store.metadata("parts__v1")["retrieval_mode"] == "dense"


def test_no_note_when_the_configured_mode_is_the_best(tmp_path):
    """Configured sparse on the same questions: nothing beats it, so no note and the tag says ``-``."""
    location, questions = build(tmp_path, {**CONFIG, "retrieval_mode": "sparse"})
    rec = Recorder()
    decision = gate.evaluate_and_promote(location=location, product="parts", version="v1", queries_path=questions,
                                         tolerance=0.02, recorder=rec)
    assert decision["retrieval_mode"] == "sparse" and decision["better_mode"] is None
    assert rec.tags[BETTER_MODE_TAG] == "-" and "beats the configured" not in rec.tags[GATE_REASON_TAG]
    assert rec.metrics["ndcg_at_10"] == pytest.approx(decision["modes"]["sparse"]["ndcg_at_10"])
