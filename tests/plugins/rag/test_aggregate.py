"""The roll-up's headline figures on the parent run, computed from the summary alone."""

from __future__ import annotations

from ragtrail_airflow.rag.aggregate import quality_metrics


def test_quality_reaches_the_parent_run_and_a_worse_promotion_is_marked():
    summary = {"eval": {"ndcg_at_10": 0.96, "recall_at_10": 1.0, "mrr_at_10": 0.9, "latency_p95_ms": 41.0,
                        "hit_rate": 1.0},
               "gate": "passed", "promoted_worse": True, "vs_live": {"delta": -0.013, "p_value": 0.31, "queries": 30}}
    assert quality_metrics(summary) == {"ndcg_at_10": 0.96, "recall_at_10": 1.0, "mrr_at_10": 0.9,
                                        "latency_p95_ms": 41.0, "ndcg_delta_vs_live": -0.013,
                                        "ndcg_p_value_vs_live": 0.31, "promoted_worse": 1.0}


def test_no_evaluation_no_quality_metrics():
    assert quality_metrics({"eval": None, "gate": None, "vs_live": None}) == {}
