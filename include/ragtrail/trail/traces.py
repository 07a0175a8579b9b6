"""Traces: ``@track``'s calls and searches as MLflow trace spans, sampled, nested under the task's run.

Where a trace goes: inside a tracked task (``@task.tracked``, or a task the listener tracks, which
exports ``MLFLOW_RUN_ID`` / ``MLFLOW_EXPERIMENT_ID``) it is linked to the task's run (MLflow's
``mlflow.sourceRun``) in the task's experiment; anywhere else it goes to the feature's own experiment
(``ragtrail - <feature> (<id>)``). A span opened inside another span nests under it.

Sampled: ``RAGTRAIL_TRACE_SAMPLE_RATE`` / ``[ragtrail] trace_sample_rate`` (0 to 1, default 1) is the
share of root spans recorded; a call that is not sampled is a plain call. Tracking off
(``RAGTRAIL_TRACKING=off``) records nothing. MLflow writes traces in the background; the task's end
flushes them (:func:`flush`).

Example::

    from ragtrail.trail.traces import record_retrieval
    t0 = time.time_ns()
    hits = search(...)
    record_retrieval("ragtrail.search", feature="handbook-search", query="how do I rerun?",
                     collection="handbook__v3", version="v3", k=5, hits=hits, start_ns=t0, end_ns=time.time_ns())
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ragtrail.core import env
from ragtrail.trail.names import (
    COLLECTION_TAG,
    DOC_IDS_ATTR,
    FOUND_BY_ATTR,
    HITS_ATTR,
    SCORES_ATTR,
    VERSION_TAG,
)
from ragtrail.trail.switches import setting, tracking_enabled

log = logging.getLogger(__name__)
SUMMARY_CHARS = 300


def sample_rate() -> float:
    """The share of root spans recorded (``RAGTRAIL_TRACE_SAMPLE_RATE`` / ``trace_sample_rate``)."""
    return setting(env.TRACE_SAMPLE_RATE)


def summarise(value: Any) -> Any:
    """A value as a span shows it: numbers and short strings as they are, anything else cut to a few
    hundred characters (a span is not an artifact store)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= SUMMARY_CHARS else value[:SUMMARY_CHARS] + f"… ({len(value)} chars)"
    if isinstance(value, dict):
        return {str(k)[:100]: summarise(v) for k, v in list(value.items())[:20]}
    if isinstance(value, (list, tuple)):
        head = [summarise(v) for v in list(value)[:10]]
        return head + ([f"… ({len(value)} items)"] if len(value) > 10 else [])
    return summarise(repr(value))


# The TaskRun of the tracked task running in this context (set by ragtrail.trail.task_run): @track nests its
# runs under it.
CURRENT_TASK_RUN: ContextVar[Any] = ContextVar("ragtrail_current_task_run", default=None)


def _destination(feature: str):
    """``(client, experiment_id, run_id)`` for a root span, or ``None`` when the task runs untracked."""
    from ragtrail.trail.client import get_or_create_experiment, guarded_client
    from ragtrail.trail.guard import Policy

    task_run = CURRENT_TASK_RUN.get()
    if task_run is not None:
        if not task_run.mlflow_run_id:
            return None
        return task_run.client, task_run.experiment_id, task_run.mlflow_run_id
    client = guarded_client(Policy.from_env())
    if os.environ.get("MLFLOW_RUN_ID") and os.environ.get("MLFLOW_EXPERIMENT_ID"):  # the listener's task
        return client, os.environ["MLFLOW_EXPERIMENT_ID"], os.environ["MLFLOW_RUN_ID"]
    return client, get_or_create_experiment(client, feature, kind="feature"), None


@contextmanager
def span(name: str, span_type: str, *, feature: str, inputs: Any = None,
         attributes: dict | None = None) -> Iterator[Any]:
    """Record the block as a span (yields MLflow's live span, or ``None`` when not recorded).

    The block's own exceptions propagate unchanged (MLflow marks the span ERROR with the exception);
    a failure to reach MLflow never reaches the caller in lenient mode, and raises a ``TrackingError``
    naming the tracking URI in strict mode, before the block runs.
    """
    if not tracking_enabled():
        yield None
        return
    import mlflow

    root = mlflow.get_current_active_span() is None
    if root and random.random() >= sample_rate():
        yield None
        return
    kwargs: dict[str, Any] = {"span_type": span_type, "attributes": attributes or {}}
    if root:
        where = _open(feature)
        if where is None:
            yield None
            return
        client, experiment_id, run_id = where
        _export_to(client.tracking_uri)
        from mlflow.entities.trace_location import MlflowExperimentLocation

        kwargs.update(trace_destination=MlflowExperimentLocation(experiment_id), run_id=run_id)
    _made()
    with mlflow.start_span(name, **kwargs) as live:
        if inputs is not None:
            live.set_inputs(summarise(inputs))
        yield live


def _export_to(uri: str) -> None:
    """Point this process's trace exporter at ``uri`` without exporting it to later subprocesses.

    ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in ``os.environ`` "so that subprocesses
    inherit it": one traced call would then send every process started afterwards (an Airflow component,
    ``ragtrail`` itself) to this store. The variable is put back as it was.
    """
    import mlflow

    if mlflow.get_tracking_uri() == uri:
        return
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def _open(feature: str):
    """Where a root span goes, or ``None`` (untracked task; MLflow unavailable in lenient mode)."""
    from ragtrail.trail.guard import Policy, tracking_failed

    try:
        return _destination(feature)
    except Exception as err:
        tracking_failed(Policy.from_env(), os.environ.get("MLFLOW_TRACKING_URI", "(the data folder's store)"),
                        f"opening a trace for {feature}", err, "the call runs untraced")
        return None


def record_retrieval(name: str, *, feature: str, query: Any, collection: str | None, version: str | None,
                     k: int, hits: Sequence[dict], start_ns: int, end_ns: int) -> None:
    """Record a search that already answered as a RETRIEVER span: collection, version, the query and ``k``
    in; doc ids, scores and texts out; its latency from ``start_ns`` to ``end_ns`` (``time.time_ns()``).

    After the fact, so that a search answers (and ``ragtrail search`` prints) before MLflow is even
    imported. Nested under the current span if there is one, else a trace of its own (see the module).
    """
    if not tracking_enabled():
        return
    # A span to nest under exists only once MLflow is imported: until then none is looked for, and a call
    # sampled out spares the import (seconds of a `ragtrail search`).
    parent = sys.modules["mlflow"].get_current_active_span() if "mlflow" in sys.modules else None
    if parent is None and random.random() >= sample_rate():
        return
    import mlflow
    kwargs: dict[str, Any] = {"parent_span": parent}
    if parent is None:
        where = _open(feature)
        if where is None:
            return
        client, experiment_id, run_id = where
        _export_to(client.tracking_uri)
        kwargs.update(experiment_id=experiment_id, metadata={"mlflow.sourceRun": run_id} if run_id else None)
    _made()
    live = mlflow.start_span_no_context(
        name, span_type="RETRIEVER", inputs={"query": summarise(query), "k": k}, start_time_ns=start_ns,
        attributes={COLLECTION_TAG: collection or "", VERSION_TAG: version or ""}, **kwargs)
    RetrieverSpan(live).hits(hits)
    live.end(end_time_ns=end_ns)


def trace_search(name: str, product: str, queries: dict[str, str], collection: str | None, version: str | None,
                 k: int, results: dict[str, list[dict]], started: int, ended: int) -> None:
    """The search as a RETRIEVER trace in ``<product>-search`` (after it answered; sampled, see the trail)."""
    record_retrieval(name, feature=f"{product}-search", k=k, start_ns=started, end_ns=ended,
                     query=next(iter(queries.values())) if len(queries) == 1 else queries,
                     collection=collection or f"{product} (live alias)", version=version,
                     hits=[{**h, "query_id": qid} for qid, hits in results.items() for h in hits])


class RetrieverSpan:
    """What a search hands its span: the hits (a no-op when the span is not recorded)."""

    def __init__(self, live):
        self.live = live

    def hits(self, hits: Sequence[dict]) -> None:
        if self.live is None:
            return
        docs = [{"id": str(h.get("chunk_id") or h.get("id") or ""), "page_content": summarise(h.get("text") or ""),
                 "metadata": {"doc_id": h.get("doc_id"), "score": h.get("score"), "source": h.get("source"),
                              **({"found_by": list(h["found_by"])} if h.get("found_by") else {})}}
                for h in hits]
        self.live.set_outputs(docs)
        self.live.set_attributes({DOC_IDS_ATTR: [d["metadata"]["doc_id"] for d in docs][:50],
                                  SCORES_ATTR: [d["metadata"]["score"] for d in docs][:50],
                                  FOUND_BY_ATTR: ["+".join(h.get("found_by") or ()) or "-" for h in hits][:50],
                                  HITS_ATTR: len(docs)})


_spans_made = False  # a span was started in this process: flush() has something to write


def _made() -> None:
    global _spans_made
    _spans_made = True


def flush() -> None:
    """Write the traces MLflow still holds in the background (at a task's end); a no-op when this module made
    no span in this process (most tasks): flushing imports MLflow's span processors and exporters, ~1 s at
    every such task's end to find nothing queued."""
    if not _spans_made:
        return
    try:
        import mlflow

        mlflow.flush_trace_async_logging()
    except Exception:
        log.debug("could not flush MLflow traces", exc_info=True)
