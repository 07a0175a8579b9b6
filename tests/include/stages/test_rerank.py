"""The re-ranking seam: a real (tiny, hand-set) cross-encoder re-orders what a real store and model found.

The store is Qdrant Edge in a temporary folder, the first stage the bundled all-MiniLM-L6-v2; the re-ranker
is built and saved here (tests/cross_encoders.py): it prefers chunks with more ``mango`` tokens, which the
embedder ranks last for a question about retrying tasks, so a seam that did not re-rank would fail.
"""

from __future__ import annotations

import uuid

import pytest
from cross_encoders import random_like, tiny_fruit_ranker

from ragtrail.core.envvar import BadSetting
from ragtrail.stages import rerank
from ragtrail.stages.embedding import embed_texts
from ragtrail.stages.search import search_many
from ragtrail.store import Point, StoreSettings, open_store

QUESTION = "how do I retry a failed task?"
CHUNKS = {
    "retry.md": "To retry a failed task, clear it in the grid view and the scheduler runs it again.",
    "retries.md": "Tasks that fail are retried automatically when retries is set on the operator.",
    "parse.md": "The scheduler parses DAG files every thirty seconds.",
    "mango.md": "mango mango mango mango",
    "salad.md": "a mango and a peach",
    "db.md": "Airflow keeps its metadata in a database.",
}


@pytest.fixture(scope="module")
def store_settings(tmp_path_factory):
    """A real Edge store with the six chunks above under product ``fruit`` (alias → fruit__v1)."""
    settings = StoreSettings(path=str(tmp_path_factory.mktemp("edge")), kind="edge")
    vectors = embed_texts(list(CHUNKS.values()))
    with open_store(settings) as store:
        store.create("fruit__v1", vectors.shape[1], {"embedder": "all-MiniLM-L6-v2", "embed_backend": "torch"})
        store.upsert("fruit__v1", [
            Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, doc)), vector=vec.tolist(),
                  payload={"doc_id": doc, "text": text, "chunk_index": 0, "version": "v1"})
            for (doc, text), vec in zip(CHUNKS.items(), vectors, strict=True)])
        store.finish("fruit__v1")
        store.point_alias("fruit", "fruit__v1")
    return settings


@pytest.fixture(scope="module")
def fruit_ranker(tmp_path_factory):
    return tiny_fruit_ranker(tmp_path_factory.mktemp("ce") / "fruit-ranker")


def plain(store_settings, k: int) -> list[dict]:
    return search_many("fruit", {"q": QUESTION}, location=store_settings, k=k)["q"]


def test_the_tiny_models_preference_is_the_one_built_in(fruit_ranker):
    """More ``mango`` tokens score higher; a pair without one scores the same as any other without one."""
    model = rerank.load_reranker(fruit_ranker)
    s = model.predict([(QUESTION, CHUNKS[d]) for d in ("mango.md", "salad.md", "retry.md", "db.md")])
    assert s[0] > s[1] > s[2] and s[2] == pytest.approx(s[3])


def test_off_by_default_the_first_stage_order_stands(store_settings, monkeypatch):
    monkeypatch.delenv("RAGTRAIL_RERANKER", raising=False)
    hits = plain(store_settings, 3)
    assert rerank.configured() is None
    assert len(hits) == 3 and "first_stage_rank" not in hits[0]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_the_cross_encoder_reorders_the_first_stage_hits(store_settings, fruit_ranker, monkeypatch):
    """The mango chunks, outside the embedder's top 3, come first; the rest keep first-stage order (tied at 0)."""
    monkeypatch.delenv("RAGTRAIL_RERANKER", raising=False)
    first = plain(store_settings, len(CHUNKS))
    first_rank = {h["doc_id"]: (rank, h["score"]) for rank, h in enumerate(first, 1)}
    assert first_rank["mango.md"][0] > 3 and first_rank["salad.md"][0] > 3  # the test's premise, measured

    monkeypatch.setenv("RAGTRAIL_RERANKER", str(fruit_ranker))
    hits = plain(store_settings, 3)
    ties = [h["doc_id"] for h in first if h["doc_id"] not in ("mango.md", "salad.md")]
    assert [h["doc_id"] for h in hits] == ["mango.md", "salad.md", ties[0]]
    # each score is the model's own for that pair; first-stage rank and score are kept
    model = rerank.load_reranker(fruit_ranker)
    assert [h["score"] for h in hits] == pytest.approx(
        [float(s) for s in model.predict([(QUESTION, h["text"]) for h in hits])])
    for h in hits:
        assert (h["first_stage_rank"], h["first_stage_score"]) == (
            first_rank[h["doc_id"]][0], pytest.approx(first_rank[h["doc_id"]][1]))


def test_only_the_top_n_first_stage_hits_are_rescored(store_settings, fruit_ranker, monkeypatch):
    """With N = k = 2 the mango chunks (first-stage rank > 3) are never seen by the re-ranker."""
    monkeypatch.delenv("RAGTRAIL_RERANKER", raising=False)
    top2 = {h["doc_id"] for h in plain(store_settings, 2)}
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(fruit_ranker))
    monkeypatch.setenv("RAGTRAIL_RERANK_TOP_N", "2")
    hits = plain(store_settings, 2)
    assert {h["doc_id"] for h in hits} == top2 and {h["first_stage_rank"] for h in hits} == {1, 2}
    monkeypatch.setenv("RAGTRAIL_RERANK_TOP_N", "1")  # below k: raised to k, still k hits
    assert len(plain(store_settings, 2)) == 2


def test_the_model_is_loaded_once_per_process(store_settings, fruit_ranker, monkeypatch):
    rerank._load.cache_clear()
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(fruit_ranker))
    plain(store_settings, 3)
    search_many("fruit", {"a": QUESTION, "b": "which fruit is best"}, location=store_settings, k=3)
    assert rerank._load.cache_info().misses == 1 and rerank._load.cache_info().hits >= 1


@pytest.mark.parametrize("case", ["missing", "no_config", "broken", "two_labels"])
def test_a_folder_that_is_no_reranker_stops_the_search_with_one_clear_line(store_settings, tmp_path, monkeypatch,
                                                                          case):
    """Fail clearly, before any query: the variable, the folder and what is wrong — never a half-answered run."""
    folder = tmp_path / "ce"
    if case == "no_config":
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x")
    elif case == "broken":
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "bert"}')
    elif case == "two_labels":
        random_like(folder, layers=1, hidden=8, heads=1, intermediate=4, labels=2)
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(folder))
    with pytest.raises(rerank.RerankerError) as err:
        plain(store_settings, 3)
    message = str(err.value)
    assert message.startswith(f"RAGTRAIL_RERANKER={folder}: ") and "\n" not in message
    assert {"missing": "no such folder", "no_config": "no config.json", "broken": "does not load as a",
            "two_labels": "gives 2 scores per pair"}[case] in message
    assert message.endswith("unset it to search without re-ranking")


def test_the_cli_prints_the_reason_and_exits_1(tmp_path, monkeypatch, capsys):
    from ragtrail.cli.main import main

    monkeypatch.setenv("RAGTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(tmp_path / "nowhere"))
    assert main(["search", "--product", "fruit", "retry a task"]) == 1
    err = capsys.readouterr().err
    assert f"ragtrail search: RAGTRAIL_RERANKER={tmp_path / 'nowhere'}: no such folder" in err
    assert "Traceback" not in err


def test_a_bad_top_n_is_a_bad_setting(fruit_ranker, monkeypatch):
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(fruit_ranker))
    monkeypatch.setenv("RAGTRAIL_RERANK_TOP_N", "0")
    with pytest.raises(BadSetting, match="RAGTRAIL_RERANK_TOP_N='0' is not a whole number from 1 to 1000"):
        rerank.configured()
