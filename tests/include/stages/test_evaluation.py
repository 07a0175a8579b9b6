"""Retrieval metrics and the promotion gate against values computed by hand."""

from __future__ import annotations

import json
import math

import pytest

from ragtrail.core.settings import SAMPLE_CORPUS
from ragtrail.stages.evaluation import (
    SAMPLE_QUERIES,
    documents_from_chunks,
    load_queries,
    percentile,
    resolve_query_file,
    score_query,
    score_rankings,
    summarize,
)
from ragtrail.stages.gate import compare_with_live, gate, paired_permutation_p


def test_binary_relevance_by_hand():
    """Relevant a, b, c; ranked a x b y: DCG 1 + 1/2, IDCG 1 + 1/log2(3) + 1/2; recall 1/3, 2/3, 2/3; MRR 1."""
    m = score_query(["a", "x", "b", "y"], {"a": 1, "b": 1, "c": 1})
    assert m["ndcg_at_10"] == pytest.approx(1.5 / (1 + 1 / math.log2(3) + 0.5)) == pytest.approx(0.703918, abs=1e-6)
    assert (m["recall_at_1"], m["recall_at_5"], m["recall_at_10"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert m["mrr_at_10"] == 1.0 and m["hit_rate"] == 1.0


def test_graded_relevance_by_hand():
    """Grades a=2, b=1 ranked b a: DCG 1 + 2/log2(3), IDCG 2 + 1/log2(3) = 0.859719."""
    m = score_query(["b", "a"], {"a": 2, "b": 1})
    assert m["ndcg_at_10"] == pytest.approx(0.859719, abs=1e-6)
    assert m["recall_at_1"] == 0.5 and m["mrr_at_10"] == 1.0


def test_misses_and_late_hits():
    """Nothing relevant in the top 10 scores 0 everywhere; a first hit at rank 3 gives MRR 1/3; rank 11 counts nothing."""
    assert set(score_query(["x"], {"a": 1}).values()) == {0.0}
    assert score_query(["x", "y", "a"], {"a": 1})["mrr_at_10"] == pytest.approx(1 / 3)
    late = score_query([f"d{i}" for i in range(10)] + ["a"], {"a": 1})
    assert late["hit_rate"] == 0.0 and late["recall_at_10"] == 0.0


def test_chunks_fold_into_documents_by_their_best_chunk():
    """A document's score is its best chunk's; documents are ranked by it and cut at k."""
    hits = [{"doc_id": "a", "score": 0.5}, {"doc_id": "b", "score": 0.7}, {"doc_id": "a", "score": 0.9},
            {"doc_id": "c", "score": 0.1}]
    assert documents_from_chunks(hits) == [("a", 0.9), ("b", 0.7), ("c", 0.1)]
    assert documents_from_chunks(hits, k=2) == [("a", 0.9), ("b", 0.7)]


def test_rankings_score_as_the_mean_of_judged_queries():
    """What the benchmarks use: per-query metrics averaged over judged queries; an unjudged one is left out."""
    queries = [{"relevant": {"a": 1.0}}, {"relevant": {"b": 1.0}}, {"relevant": {}}]
    m = score_rankings([["a", "x"], ["x", "b"], ["z"]], queries)
    assert m["mrr_at_10"] == pytest.approx(0.75)
    assert m["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert m["recall_at_1"] == pytest.approx(0.5) and m["hit_rate"] == 1.0
    with pytest.raises(ValueError):  # one ranking per query, or it is a mistake
        score_rankings([["a"]], queries)


def test_summary_means_and_latency_percentiles():
    """Metrics are means over judged queries; unjudged ones count only for latency; p50/p95 interpolate."""
    rows = [{**score_query(["a"], {"a": 1}), "relevant": {"a": 1}, "latency_ms": 10},
            {**score_query(["x"], {"a": 1}), "relevant": {"a": 1}, "latency_ms": 20},
            {**score_query(["x"], {}), "relevant": {}, "latency_ms": 30},
            {**score_query(["x"], {}), "relevant": {}, "latency_ms": 40}]
    s = summarize(rows)
    assert s["ndcg_at_10"] == 0.5 and s["hit_rate"] == 0.5 and s["queries"] == 4 and s["queries_judged"] == 2
    assert s["latency_p50_ms"] == 25 and s["latency_p95_ms"] == pytest.approx(38.5)
    assert percentile([], 50) == 0.0


def test_query_files(tmp_path):
    """Lists mean grade 1, dicts carry grades; a bad line names its line number; duplicate ids are refused."""
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"id": 1, "text": "t", "relevant": ["a"]}) + "\n\n"
                    + json.dumps({"id": "2", "text": "u", "relevant": {"b": 2}}) + "\n")
    assert load_queries(path) == [{"id": "1", "text": "t", "relevant": {"a": 1.0}},
                                  {"id": "2", "text": "u", "relevant": {"b": 2.0}}]
    path.write_text(json.dumps({"id": "1", "text": "t"}) + "\n" + json.dumps({"text": "no id"}) + "\n")
    with pytest.raises(ValueError, match=r"q.jsonl:2"):
        load_queries(path)
    path.write_text((json.dumps({"id": "1", "text": "t"}) + "\n") * 2)
    with pytest.raises(ValueError, match="not unique"):
        load_queries(path)


def test_the_sample_corpus_has_its_own_questions():
    """The bundled corpus resolves to its bundled query set (≥ 25 questions, each naming existing documents)."""
    assert resolve_query_file(str(SAMPLE_CORPUS)) == SAMPLE_QUERIES
    assert resolve_query_file(f"file://{SAMPLE_CORPUS}") == SAMPLE_QUERIES
    assert resolve_query_file("/elsewhere") is None and resolve_query_file("/elsewhere", "q.jsonl").name == "q.jsonl"
    queries = load_queries(SAMPLE_QUERIES)
    assert len(queries) >= 25
    assert all((SAMPLE_CORPUS / doc).is_file() for q in queries for doc in q["relevant"])


def test_gate_thresholds_and_tolerance():
    """Below min_ndcg fails; worse than live beyond the tolerance fails; within it passes; no live version passes."""
    assert gate({"ndcg_at_10": 0.4}, None, min_ndcg=0.5)[0] is False
    ok, reason = gate({"ndcg_at_10": 0.6}, {"ndcg_at_10": 0.7}, tolerance=0.05, live_name="p__v1")
    assert not ok and "p__v1" in reason and "0.7000" in reason
    assert gate({"ndcg_at_10": 0.66}, {"ndcg_at_10": 0.7}, tolerance=0.05)[0] is True
    assert gate({"ndcg_at_10": 0.1}, None)[0] is True


def test_paired_permutation_test_by_hand():
    """Sign flips enumerated exactly: every one of 10 queries worse → p = 1/2**10; one query of 30 a bit
    worse, the rest equal → p = 1/2 (a coin flip: not significant); no difference → 1."""
    assert paired_permutation_p([0.5] * 10, [1.0] * 10) == pytest.approx(1 / 1024)
    assert paired_permutation_p([1.0] * 29 + [0.6], [1.0] * 30) == pytest.approx(0.5)
    assert paired_permutation_p([0.7] * 5, [0.7] * 5) == 1.0
    many = paired_permutation_p([0.5] * 40, [0.6] * 40)  # Monte Carlo past 16 differing queries
    assert many < 0.001


def test_gate_rejects_a_significant_drop_and_marks_a_small_one():
    """Within the tolerance: a significant drop is rejected; a not significant one passes, labelled WORSE."""
    rows = [{"query_id": f"q{i}", "ndcg_at_10": 0.9, "relevant": '{"a": 1}'} for i in range(12)]
    live_rows = [{**r, "ndcg_at_10": 0.91} for r in rows]
    versus = compare_with_live(rows, live_rows)
    assert versus["queries"] == 12 and versus["delta"] == pytest.approx(-0.01)
    assert versus["p_value"] == pytest.approx(1 / 4096)
    ok, reason = gate({"ndcg_at_10": 0.9}, {"ndcg_at_10": 0.91}, tolerance=0.02, p_value=versus["p_value"])
    assert not ok and "significantly worse" in reason
    ok, reason = gate({"ndcg_at_10": 0.960}, {"ndcg_at_10": 0.973}, tolerance=0.02, p_value=0.31)
    assert ok and reason.startswith("WORSE than live") and "p=0.310" in reason
