"""The names the stages write on their runs (tags and the metrics read back), declared once.

The stages may not import the trail (see docs/architecture.md), so the tag and metric names they write
live here, in the basics; :mod:`ragtrail.trail.names` re-exports every one of them, so that module is the
one place to read all of ragtrail's MLflow names. A test (tests/include/trail/test_names.py) fails on a
``"ragtrail.…"`` tag literal anywhere else.
"""

from __future__ import annotations

# Tags the evaluation gate, the index stage and the canary write.
GATE_TAG, GATE_REASON_TAG = "ragtrail.gate", "ragtrail.gate_reason"
LIVE_COLLECTION_TAG, VS_LIVE_TAG = "ragtrail.live_collection", "ragtrail.vs_live"
# The mode that beat the version's configured retrieval mode on nDCG@10 by more than the tolerance ("-": none).
BETTER_MODE_TAG = "ragtrail.better_mode"
CANARY_TAG, CANARY_REASON_TAG = "ragtrail.canary", "ragtrail.canary_reason"
# The tuning stage's ``ragtrail.plot_<name>`` tag says why a plot was not drawn.
PLOT_TAG_PREFIX = "ragtrail.plot_"

# Metrics that the roll-up, the metrics page, the REST API's trend/compare and the registry read back.
NDCG_AT_10, RECALL_AT_10, MRR_AT_10 = "ndcg_at_10", "recall_at_10", "mrr_at_10"
LATENCY_P95_MS = "latency_p95_ms"
VECTOR_COUNT, CHUNK_COUNT, DOCS_PARSED = "vector_count", "chunk_count", "docs_parsed"
EMBEDDINGS_PER_SECOND, EMBEDDING_COUNT = "embeddings_per_second", "embedding_count"
DURATION_S = "duration_s"
# The evaluation's quality metrics, in the order they are reported.
EVAL_METRICS = (NDCG_AT_10, "recall_at_1", "recall_at_5", RECALL_AT_10, MRR_AT_10, "hit_rate")
# Per retrieval mode, the evaluation reports these as ``<metric>.<mode>`` (e.g. ``ndcg_at_10.sparse``).
MODE_METRICS = (NDCG_AT_10, RECALL_AT_10, MRR_AT_10, LATENCY_P95_MS)


def mode_metric(metric: str, mode: str) -> str:
    """The name of ``metric`` measured in retrieval ``mode``: ``mode_metric("ndcg_at_10", "dense")`` is
    ``"ndcg_at_10.dense"``."""
    return f"{metric}.{mode}"
