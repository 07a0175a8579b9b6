"""Glue between stages that several callers share: the index stage over the results of mapped
(possibly partly failed) upstream tasks."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.core.spec import RunConfig

STATE_AFTER = "state_after"  # the folder commit_state writes: the manifest and the parts this run rewrote


def index_from_results(chunked, embedded, cfg: RunConfig, workdir: str | Path, run_id: str,
                       recorder: Recorder | None = None, location=None, state_base: str | Path | None = None,
                       work=None) -> dict:
    """Run the index stage on whatever the upstream (possibly partly failed) mapped tasks produced.

    Missing chunk or embed results (a failed batch) leave their documents untouched in the index; the
    roll-up then reports the run PARTIAL. ``location``: anything :func:`ragtrail.store.resolve_store`
    accepts (``None``: the environment's store). ``state_base``: the committed source state (a local copy);
    the state after this run's writes (a folder: the parts it rewrote and the manifest) is written to
    ``state_path`` of the result for the caller to commit
    (:class:`ragtrail.core.statefile.StateFile`), when the ingest stage wrote a delta. ``work``: the run's
    :class:`ragtrail.core.workstore.RunWork` when ``chunked`` / ``embedded`` carry its store URLs; the stage
    then fetches each file when it reads it and drops the local copy after (``None``: local paths).
    """
    from ragtrail.stages.indexing import index_run
    from ragtrail.stages.plan import read_plan
    from ragtrail.store.edge_parts import bounds_from_batches, part_points

    planned = read_plan(workdir)
    chunk_paths = [c["chunks_path"] for c in chunked or [] if c]
    if planned["batches"] and not chunk_paths:
        raise RuntimeError(f"all {len(planned['batches'])} chunk batches failed: nothing to index")
    fetch, release = _file_access(work)
    counts = [c.get("chunks") for c in chunked or [] if c]
    deleted = json.loads(Path(planned["deleted_path"]).read_text()) if planned.get("deleted_path") else []
    out = Path(workdir) / STATE_AFTER
    changed = json.loads(Path(planned["changed_path"]).read_text()) if planned.get("changed_path") else []
    state = {"base_path": planned.get("held_path") or state_base, "delta_path": planned.get("delta_path"),
             "changed": set(changed), "out_path": out}
    result = index_run(
        location=location, product=cfg.product, version=cfg.version,
        config=cfg.version_config(), chunk_paths=chunk_paths,
        embedded=[e for e in embedded or [] if e], deleted_docs=deleted, workdir=workdir, run_id=run_id,
        recorder=recorder, source_state=state,  # the evaluate stage moves the alias (ragtrail.stages.gate)
        total_chunks=sum(counts) if counts and all(isinstance(n, int) for n in counts) else None,
        fetch=fetch, release=release,
        # an embedded store's parts: a new part at a chunk batch's first document every ~part_points() points
        parts=bounds_from_batches(((c.get("first_doc"), c.get("chunks")) for c in chunked or [] if c), part_points()),
    )
    return {**result, "state_path": str(out) if state["delta_path"] and out.exists() else None}


def _file_access(work):
    """(fetch, release) of one file: a work store's file is fetched when read and its local copy removed
    after; a local path is read in place."""
    if work is None or not work.remote:
        return (lambda path: path), (lambda path: None)
    return (lambda url: str(work.fetch_file(url))), (lambda path: Path(path).unlink(missing_ok=True))
