"""The trail's vocabulary: tag and model names, MLflow UI URLs, filter quoting and redaction (one copy each).

Everything here is plain string work: no MLflow import, so the Airflow edge, the CLI and the tests
use it freely.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote as url_quote

# The stages' tag and metric names live in the basics (the stages may not import the trail); read them here.
from ragtrail.core.stage_names import (  # noqa: F401 (re-exported: this module is the one place to read names)
    BETTER_MODE_TAG,
    CANARY_REASON_TAG,
    CANARY_TAG,
    CHUNK_COUNT,
    DOCS_PARSED,
    DURATION_S,
    EMBEDDING_COUNT,
    EMBEDDINGS_PER_SECOND,
    EVAL_METRICS,
    GATE_REASON_TAG,
    GATE_TAG,
    LATENCY_P95_MS,
    LIVE_COLLECTION_TAG,
    MODE_METRICS,
    MRR_AT_10,
    NDCG_AT_10,
    PLOT_TAG_PREFIX,
    RECALL_AT_10,
    VECTOR_COUNT,
    VS_LIVE_TAG,
    mode_metric,
)

ROLE_TAG, DAG_TAG, RUN_TAG, TASK_TAG = "ragtrail.role", "airflow.dag_id", "airflow.run_id", "airflow.task_id"
TRY_TAG, MAP_TAG, STAGE_TAG = "airflow.try_number", "airflow.map_index", "ragtrail.stage"
PRODUCT_TAG, VERSION_TAG, STATUS_TAG = "ragtrail.product", "ragtrail.version", "ragtrail.status"
PARENT_TAG = "mlflow.parentRunId"
KIND_TAG, ERROR_TAG, ERROR_CLASS_TAG = "ragtrail.kind", "ragtrail.error", "ragtrail.error_class"
URL_TAG, NOTE_TAG = "airflow.url", "mlflow.note.content"
ERROR_DETAIL_TAG, PRODUCT_ID_TAG, SKIPPED_TAG = "ragtrail.error_detail", "ragtrail.product_id", "ragtrail.skipped"
# The parent run's roll-up: why it ended as it did, whether its trail is whole, what a person should know.
REASONS_TAG, WARNINGS_TAG, PROMOTION_TAG = "ragtrail.reasons", "ragtrail.warnings", "ragtrail.promotion"
TRAIL_TAG, TRAIL_MISSING_TAG, TRAIL_CLOSED_TAG = "ragtrail.trail", "ragtrail.trail_missing", "ragtrail.trail_closed"
CLOSED_BY_TAG, PUBLISHING_TAG = "ragtrail.closed_by", "ragtrail.publishing"
# A mapped task's one run (all map indexes, all tries): ``ragtrail.mapped`` = "true" on it; the parent holds the
# param ``ragtrail.claim.<task_id>`` naming who created it (params are write-once: the claim is atomic);
# a failed map index tags it ``ragtrail.map_error.<map index>`` with its cause; the closer sums them up in
# ``ragtrail.failed_indexes`` ("3, 7") and the ``map_indexes.json`` table (one row per map index).
MAPPED_TAG, CLAIM_PARAM, MAP_ERROR_TAG = "ragtrail.mapped", "ragtrail.claim", "ragtrail.map_error"
FAILED_INDEXES_TAG, MAP_TABLE, MAP_TABLE_TAG = "ragtrail.failed_indexes", "map_indexes.json", "ragtrail.map_table"
# Per-map-index figures on a mapped task's run, as metric steps (step = map index).
MAP_OK, MAP_DURATION_S, MAP_TRY = "map_ok", "map_duration_s", "map_try"
DAG_RUN_STATE_TAG, DAG_RUN_MSG_TAG = "ragtrail.dag_run_state", "ragtrail.dag_run_msg"
# Who decided a promotion, and the registered version a build became.
APPROVAL_TAG, APPROVAL_BY_TAG, APPROVAL_AT_TAG = "ragtrail.approval", "ragtrail.approval_by", "ragtrail.approval_at"
MODEL_VERSION_TAG = "ragtrail.model_version"
# MLflow 3 opens an experiment without this tag in its GenAI view, which has no metrics or params
# tables for pipeline runs; "custom_model_development" is its classic "model training" view.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI picks its layout from the URL's ``workflowType`` parameter, else from the browser's
# last choice (localStorage ``mlflow.workflowType``), else GenAI — for every page, the home page and the
# experiment page included; the experiment's mlflow.experimentKind tag no longer decides (the
# workflow-type switcher is always on). So every link ragtrail makes names the classic layout.
WORKFLOW_PARAM = "workflowType=machine_learning"
CLASSIC_VIEW = f"?{WORKFLOW_PARAM}"

# The Model Registry: every built version is a version of ``ragtrail-<product>``.
MODEL_PREFIX = "ragtrail-"
COLLECTION_TAG, EMBEDDER_TAG = "ragtrail.collection", "ragtrail.embedder"
EMBEDDER_URI_TAG, SOURCE_DIGEST_TAG = "ragtrail.embedder_model_uri", "ragtrail.source_digest"
CHUNK_SIZE_TAG, CHUNK_OVERLAP_TAG, ARCHIVED_TAG = "ragtrail.chunk_size", "ragtrail.chunk_overlap", "ragtrail.archived"
RETRIEVAL_MODE_TAG, FUSION_TAG = "ragtrail.retrieval_mode", "ragtrail.fusion"  # how the version answers
SPARSE_WEIGHT_TAG = "ragtrail.sparse_weight"  # hybrid mode: the BM25 side's weight in the fusion
EVAL_TAG_PREFIX = "eval."  # a registered version's ``eval.<metric>`` tags: its evaluation at registration
PRODUCTION_ALIAS, CANDIDATE_ALIAS = "production", "candidate"

# Traces: the search span's name and the ``ragtrail.*`` attributes spans carry.
SEARCH_SPAN, ATTRIBUTE_PREFIX = "ragtrail.search", "ragtrail."
DOC_IDS_ATTR, SCORES_ATTR, HITS_ATTR = "ragtrail.doc_ids", "ragtrail.scores", "ragtrail.hits"
FOUND_BY_ATTR = "ragtrail.found_by"  # per hit, the prefetches that found it: "dense", "sparse", "dense+sparse"

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential|auth", re.I)
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def model_name(product: str) -> str:
    return f"{MODEL_PREFIX}{product}"


def quote(value: Any) -> str:
    """A value as a quoted literal in an MLflow search filter (``tags.`x` = 'it\\'s'``)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def redact_uri(uri: str) -> str:
    """``scheme://user:password@host`` → ``scheme://***@host``; anything else unchanged."""
    return _USERINFO.sub(r"\g<scheme>***@", uri)


def redact(key: str, value: Any) -> str:
    """Never let a secret reach a param or tag: mask secret-looking keys and URI credentials."""
    if _SECRET_KEY.search(key):
        return "***"
    return redact_uri(value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))


_SECRET_VALUE = re.compile(r"(?P<key>(pass(word)?|secret|token|api[_-]?key|credential|authorization)[\"']?\s*[=:]\s*"
                           r"[\"']?(bearer\s+|basic\s+)?)[^\s,;\"'&)}]+", re.I)
ERROR_LINE_CHARS = 300
# Exceptions whose message is already written for the person reading it (their class adds nothing).
PLAIN_ERRORS = {"PlainFailure", "PreflightFailed"}


def redact_text(text: str) -> str:
    """Free text (an error message) without credentials: URI user-info and ``password=…``-style values masked."""
    return _SECRET_VALUE.sub(r"\g<key>***", redact_uri(text))


def error_line(exc: BaseException | str, limit: int = ERROR_LINE_CHARS) -> str:
    """A failure in one line a person can act on: the class and the message's first line (cut at ``limit``
    characters), credentials masked. A message written for people (:data:`PLAIN_ERRORS`) stands alone.

    Example::

        error_line(ValueError("chunk_size must be …\nmore"))  # "ValueError: chunk_size must be …"
    """
    if isinstance(exc, BaseException):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = lines[0] if lines else ""
        name = type(exc).__name__
        text = first if name in PLAIN_ERRORS and first else f"{name}: {first}" if first else name
    else:
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "error")
    text = redact_text(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def error_tags(exc: BaseException) -> dict[str, str]:
    """How a failure is recorded on a run: the error class, the one-line cause (:func:`error_line`), and
    the whole message (credentials masked) for a closer look."""
    return {ERROR_TAG: error_line(exc), ERROR_CLASS_TAG: type(exc).__name__,
            ERROR_DETAIL_TAG: redact_text(f"{type(exc).__name__}: {exc}")[:4000]}


def experiments_url(ui_url: str) -> str:
    """The MLflow UI's experiment list, in its classic view."""
    return f"{ui_url.rstrip('/')}/#/experiments{CLASSIC_VIEW}"


def experiment_url(ui_url: str, experiment_id: str) -> str:
    """An experiment's runs table in the MLflow UI (classic view)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}{CLASSIC_VIEW}"


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """A run in the MLflow UI, in its classic view."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}{CLASSIC_VIEW}"


def compare_url(ui_url: str, experiment_ids: list[str], run_ids: list[str]) -> str:
    runs = url_quote(json.dumps(run_ids, separators=(",", ":")))
    exps = url_quote(json.dumps(sorted(set(experiment_ids)), separators=(",", ":")))
    return f"{ui_url.rstrip('/')}/#/compare-runs?runs={runs}&experiments={exps}&{WORKFLOW_PARAM}"
