"""Glue between stages that several callers share: the write and index stages over the results of mapped
(possibly partly failed) upstream tasks."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.core.spec import RunConfig
from ragtrail.sources.parsed import read_json_array

STATE_AFTER = "state_after"  # the folder commit_state writes: the manifest and the parts this run rewrote


def write_from_results(chunked, embedded, cfg: RunConfig, workdir: str | Path, run_id: str, *, group: int,
                       recorder: Recorder | None = None, location=None, work=None, parts: list[str] | None = None) -> dict:
    """Run one write group (:func:`ragtrail.stages.writing.write_points`) on its chunk batches' results and the
    embed batches' results they need; a failed batch's result is ``None`` (a failed chunk batch: its documents
    are not written; a failed embed batch: the documents missing its vectors are skipped). ``work``: the run's
    :class:`ragtrail.core.workstore.RunWork` when the results carry its store URLs (``None``: local paths).
    ``parts``: where an embedded store cuts the version if this writer creates it (the same for every group)."""
    from ragtrail.stages.writing import write_points

    fetch, release = _file_access(work)
    chunks = [c for c in chunked or [] if c]
    return write_points(location=location, product=cfg.product, version=cfg.version, config=cfg.version_config(),
                        chunk_paths=[c["chunks_path"] for c in chunks], embedded=[e for e in embedded or [] if e],
                        workdir=workdir, run_id=run_id, recorder=recorder, group=group, fetch=fetch, release=release,
                        parts=parts, total_chunks=_total_chunks(chunks))


def finish_from_receipts(written, cfg: RunConfig, workdir: str | Path, *, groups: int,
                         recorder: Recorder | None = None, location=None, state_base: str | Path | None = None,
                         work=None) -> dict:
    """Run the index stage (:func:`ragtrail.stages.indexing.finish_index`) on the write groups' results
    (``None`` for a failed group; ``groups``: how many there were).

    The result names the groups that left no receipt (``writes_failed``): their documents keep what the
    collection held, or hold part of their new points, so the evaluate stage must not move the alias. The
    state after the writes is written to ``state_path`` of the result for the caller to commit
    (:class:`ragtrail.core.statefile.StateFile`), when the ingest stage wrote a delta.
    """
    from ragtrail.stages.indexing import finish_index
    from ragtrail.stages.plan import read_plan

    planned = read_plan(workdir)
    receipts = [w for w in written or [] if w]
    if planned["batches"] and not receipts:
        raise RuntimeError(f"all {groups} write groups failed: nothing to index" if groups else
                           "no write groups were recorded (dedupe did not finish): nothing to index")
    if planned["batches"] and not any(r.get("chunk_files") for r in receipts):
        raise RuntimeError(f"all {len(planned['batches'])} chunk batches failed: nothing to index")
    fetch, release = _file_access(work)
    deleted, state = _plan_state(planned, workdir, state_base)
    result = finish_index(location=location, product=cfg.product, version=cfg.version, receipts=receipts,
                          deleted_docs=deleted, workdir=workdir, recorder=recorder, source_state=state,
                          fetch=fetch, release=release)
    failed = sorted(set(range(groups)) - {r["group"] for r in receipts})
    return {**result, "writes_failed": failed,
            "state_path": str(state["out_path"]) if state["delta_path"] and state["out_path"].exists() else None}


def index_from_results(chunked, embedded, cfg: RunConfig, workdir: str | Path, run_id: str,
                       recorder: Recorder | None = None, location=None, state_base: str | Path | None = None,
                       work=None) -> dict:
    """Write and index in this process with one writer (:func:`ragtrail.stages.indexing.index_run`), on whatever
    the upstream (possibly partly failed) mapped tasks produced: a missing chunk or embed result (a failed
    batch) leaves its documents untouched in the index. The arguments are as for :func:`write_from_results`
    and :func:`finish_from_receipts`; ``embedded``: every embed batch's result."""
    from ragtrail.stages.indexing import index_run
    from ragtrail.stages.plan import read_plan
    from ragtrail.store.edge_parts import bounds_of_chunks

    planned = read_plan(workdir)
    chunks = [c for c in chunked or [] if c]
    chunk_paths = [c["chunks_path"] for c in chunks]
    if planned["batches"] and not chunk_paths:
        raise RuntimeError(f"all {len(planned['batches'])} chunk batches failed: nothing to index")
    fetch, release = _file_access(work)
    deleted, state = _plan_state(planned, workdir, state_base)
    result = index_run(
        location=location, product=cfg.product, version=cfg.version,
        config=cfg.version_config(), chunk_paths=chunk_paths,
        embedded=[e for e in embedded or [] if e], deleted_docs=deleted, workdir=workdir, run_id=run_id,
        recorder=recorder, source_state=state,  # the evaluate stage moves the alias (ragtrail.stages.gate)
        total_chunks=_total_chunks(chunks),
        fetch=fetch, release=release,
        parts=bounds_of_chunks(chunks),  # an embedded store's parts: cut at chunk batches' first documents
    )
    return {**result, "state_path": str(state["out_path"]) if state["delta_path"] and state["out_path"].exists()
            else None}


def _total_chunks(chunks: list[dict]) -> int | None:
    """The points the chunk results promise (progress only; ``None`` when a result does not say)."""
    counts = [c.get("chunks") for c in chunks]
    return sum(counts) if counts and all(isinstance(n, int) for n in counts) else None


def _plan_state(planned: dict, workdir: str | Path, state_base) -> tuple[list[str], dict]:
    """The plan's deleted documents, and the source state the index stage commits from (see
    :func:`ragtrail.stages.indexing.finish_index`)."""
    deleted = json.loads(Path(planned["deleted_path"]).read_text()) if planned.get("deleted_path") else []
    # the whole corpus on a first build: read line by line when the commit asks for it, never held
    changed = read_json_array(Path(planned["changed_path"])) if planned.get("changed_path") else ()
    return deleted, {"base_path": planned.get("held_path") or state_base, "delta_path": planned.get("delta_path"),
                     "changed": changed, "out_path": Path(workdir) / STATE_AFTER}


def _file_access(work):
    """(fetch, release) of one file: a work store's file is fetched when read and its local copy removed
    after; a local path is read in place."""
    if work is None or not work.remote:
        return (lambda path: path), (lambda path: None)
    return (lambda url: str(work.fetch_file(url))), (lambda path: Path(path).unlink(missing_ok=True))
