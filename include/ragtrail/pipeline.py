"""Glue between stages that several DAGs share: the version's config, the index and evaluate calls."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrail.recorder import Recorder
from ragtrail.settings import DEFAULT_EMBED_BACKEND


def build_config(params: dict) -> dict:
    """What makes a version: everything that changes the vectors or the chunks they are made from."""
    return {"embedder": params["embedder"], "chunk_size": int(params["chunk_size"]),
            "chunk_overlap": int(params["chunk_overlap"]), "embed_backend": params.get("embed_backend") or DEFAULT_EMBED_BACKEND}


def index_from_results(chunked, embedded, params: dict, workdir: str | Path, run_id: str,
                       recorder: Recorder | None = None, location=None) -> dict:
    """Run the index stage on whatever the upstream (possibly partly failed) mapped tasks produced.

    Missing chunk or embed results (a failed batch) leave their documents untouched in the index; the
    roll-up then reports the run PARTIAL. ``location``: anything :func:`ragtrail.store.resolve_store`
    accepts (``None``: the environment's store).
    """
    from ragtrail.indexing import index_run
    from ragtrail.plan import read_plan

    planned = read_plan(workdir)
    chunk_paths = [c["chunks_path"] for c in chunked or [] if c]
    if planned["batches"] and not chunk_paths:
        raise RuntimeError(f"all {len(planned['batches'])} chunk batches failed: nothing to index")
    deleted = json.loads(Path(planned["deleted_path"]).read_text()) if planned.get("deleted_path") else []
    return index_run(
        location=location, product=params["product"], version=params["version"],
        config=build_config(params), chunk_paths=chunk_paths,
        embedded=[e for e in embedded or [] if e], deleted_docs=deleted, workdir=workdir, run_id=run_id,
        promote_alias=False,  # the evaluate stage decides (ragtrail.gate)
        keep_versions=int(params.get("keep_versions", 2)), recorder=recorder,
    )


def evaluate_from_params(params: dict, recorder: Recorder | None = None, location=None) -> dict:
    """Run the evaluate-and-gate stage for the version the DAG run built (see :mod:`ragtrail.gate`)."""
    from ragtrail.evaluation import resolve_query_file
    from ragtrail.gate import evaluate_and_promote

    return evaluate_and_promote(
        location=location, product=params["product"], version=params["version"],
        queries_path=resolve_query_file(params["source"], params.get("eval_queries") or ""),
        promote=bool(params.get("promote", True)), min_ndcg=float(params.get("min_ndcg", 0.0)),
        tolerance=float(params.get("eval_tolerance", 0.02)), keep_versions=int(params.get("keep_versions", 2)),
        recorder=recorder)
