"""ragtrail's nDCG@10 / recall@10 / MRR@10 agree with trec_eval's, through ir-measures (pytrec_eval)."""

from __future__ import annotations

import random

import ir_measures
import pytest
from ir_measures import RR, R, nDCG

from ragtrail.stages.evaluation import score_query, score_rankings


def _random_case(rng: random.Random, n_docs: int = 30) -> tuple[list[str], dict[str, float]]:
    docs = [f"d{i:02d}" for i in range(n_docs)]
    ranked = rng.sample(docs, rng.randint(1, 15))
    relevant = {d: float(rng.choice([1, 1, 2, 3])) for d in rng.sample(docs, rng.randint(1, 5))}
    return ranked, relevant


def _reference(cases: list[tuple[list[str], dict[str, float]]]) -> dict[str, dict[str, float]]:
    qrels = [ir_measures.Qrel(str(q), d, int(g)) for q, (_, rel) in enumerate(cases) for d, g in rel.items()]
    run = [ir_measures.ScoredDoc(str(q), d, float(100 - rank))
           for q, (ranked, _) in enumerate(cases) for rank, d in enumerate(ranked)]
    out: dict[str, dict[str, float]] = {}
    for m in ir_measures.iter_calc([nDCG @ 10, R @ 10, RR @ 10], qrels, run):
        out.setdefault(m.query_id, {})[str(m.measure)] = m.value
    return out


@pytest.mark.parametrize("seed", range(5))
def test_per_query_metrics_match_trec_eval(seed):
    """Graded relevance, rankings shorter and longer than 10, misses: every query agrees to 1e-9."""
    rng = random.Random(seed)
    cases = [_random_case(rng) for _ in range(40)]
    ref = _reference(cases)
    for q, (ranked, relevant) in enumerate(cases):
        ours = score_query(ranked, relevant)
        theirs = ref[str(q)]
        assert ours["ndcg_at_10"] == pytest.approx(theirs["nDCG@10"], abs=1e-9), (ranked, relevant)
        assert ours["recall_at_10"] == pytest.approx(theirs["R@10"], abs=1e-9)
        assert ours["mrr_at_10"] == pytest.approx(theirs.get("RR@10", 0.0), abs=1e-9)


def test_means_match_trec_eval():
    rng = random.Random(99)
    cases = [_random_case(rng) for _ in range(60)]
    ours = score_rankings([r for r, _ in cases], [{"relevant": rel} for _, rel in cases])
    qrels = [ir_measures.Qrel(str(q), d, int(g)) for q, (_, rel) in enumerate(cases) for d, g in rel.items()]
    run = [ir_measures.ScoredDoc(str(q), d, float(100 - rank))
           for q, (ranked, _) in enumerate(cases) for rank, d in enumerate(ranked)]
    theirs = ir_measures.calc_aggregate([nDCG @ 10, R @ 10, RR @ 10], qrels, run)
    assert ours["ndcg_at_10"] == pytest.approx(theirs[nDCG @ 10], abs=1e-9)
    assert ours["recall_at_10"] == pytest.approx(theirs[R @ 10], abs=1e-9)
    assert ours["mrr_at_10"] == pytest.approx(theirs[RR @ 10], abs=1e-9)
