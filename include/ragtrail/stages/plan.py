"""Stage 2 — plan: decide the work from what ingest read and what the version held; batch it.

With the version's source state (the ingest stage merged the listing against it), every verdict comes
from that merge: a document read this run is *added* (no previous hash), *updated* or *unchanged*;
documents of unread objects are unchanged; gone ones are *deleted* (``sync_mode=full``). The collection
is not scrolled (``collection_scrolls`` 0). Without a usable state (a version built before states, or a
lost one) the collection is scrolled once, as the source of truth: a document is unchanged when all of
its points carry its current content hash and there are exactly ``n_chunks`` of them; that scroll
seeds the state (its chunk hashes) which the run's commit completes. Only added and updated documents
go on to chunking, in batches that the chunk and embed tasks fan out over.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

from ragtrail.core.recorder import Recorder
from ragtrail.sources.parsed import JsonArrayWriter
from ragtrail.stages.arrow_pool import system_arrow_pool
from ragtrail.stages.state_commit import bootstrap_state, keep_missing
from ragtrail.stages.sync_state import delta_meta
from ragtrail.store import collection_name, open_store

SYNC_MODES = ("full", "incremental")
HELD_FILE = "state_base.sqlite"
PLAN_FILE = "plan.json"
CHANGED_FILE = "changed_docs.json"

log = logging.getLogger(__name__)


def batch_size_within(per_batch: int, total: int, max_batches: int | None, *, stage: str, param: str,
                      unit: str) -> int:
    """``per_batch``, grown when ``total`` items at ``per_batch`` would make more than ``max_batches``
    batches (one mapped task each: Airflow's ``[core] max_map_length``); says so in one log line.

    Example::

        batch_size_within(1, 1_100, 1_024, stage="plan", param="docs_per_batch", unit="documents")  # 2
    """
    per_batch = max(int(per_batch), 1)
    if not max_batches or total <= per_batch * max_batches:
        return per_batch
    grown = math.ceil(total / max_batches)
    log.warning("%s: %s %s at %s %s would make %s mapped tasks, past Airflow's map limit (max_map_length %s): "
                "%s %s per batch instead (raise [core] max_map_length to keep smaller batches)", stage,
                f"{total:,}", unit, param, f"{per_batch:,}", f"{math.ceil(total / per_batch):,}", f"{max_batches:,}",
                f"{grown:,}", unit)
    return grown


def index_state(location, collection: str, seed: Path | None = None) -> tuple[dict[str, dict] | None, dict, int]:
    """Without a state: per document its hash, expected and actual chunk counts, whether hashes are mixed,
    from one scroll of the collection (which seeds ``seed``'s chunk hashes); with ``seed=None`` (a merged
    state) only the collection's metadata. Returns ``(docs or None, metadata, collection scrolls)``."""
    docs: dict[str, dict] = {}
    with open_store(location) as store:
        if not store.exists(collection):
            return (docs if seed is not None else None), {}, 0
        meta = store.metadata(collection)
        if seed is None:
            return None, meta, 0
        pairs = []
        for p in store.scroll(collection, ["doc_id", "doc_hash", "n_chunks", "chunk_hash"]):
            pl = p.payload
            d = docs.setdefault(pl["doc_id"], {"hash": pl.get("doc_hash"), "n_chunks": pl.get("n_chunks"), "points": 0,
                                               "mixed": False})
            d["points"] += 1
            d["mixed"] |= d["hash"] != pl.get("doc_hash") or d["n_chunks"] != pl.get("n_chunks")
            if pl.get("chunk_hash"):
                pairs.append((pl["chunk_hash"], pl["doc_id"]))
    bootstrap_state(seed, pairs)
    return docs, meta, 1


def config_clash(meta: dict, config: dict) -> dict[str, tuple]:
    """What a collection was built with (its metadata) against a configuration: ``{key: (built, asked)}``."""
    if meta.get("embedder") and "embed_backend" not in meta:  # built before backends existed: torch
        meta = {**meta, "embed_backend": "torch"}
    return {k: (meta[k], v) for k, v in config.items() if k in meta and meta[k] != v}


def check_config(meta: dict, config: dict, collection: str) -> None:
    """A version is one build configuration: refuse to mix two in one collection."""
    clash = config_clash(meta, config)
    if clash:
        detail = ", ".join(f"{k}={was!r} (this run: {now!r})" for k, (was, now) in clash.items())
        raise ValueError(f"{collection} was built with {detail}: a new configuration needs a new version")


@system_arrow_pool()
def plan_sync(
    docs_path: str | Path | list,
    workdir: str | Path,
    *,
    location,
    product: str,
    version: str,
    config: dict,
    sync_mode: str = "full",
    docs_per_batch: int = 500,
    max_batches: int | None = None,
    recorder: Recorder | None = None,
    delta_path: str | Path | None = None,
    carried: int = 0,
    unread: list | None = None,
    extra: dict | None = None,
) -> dict:
    """Split the source's documents into added / updated / unchanged / deleted and batch the work.

    Args:
        docs_path: the ingest stage's ``docs.parquet``, or one per shard in shard order (a list).
        config: what defines the version (embedder, chunk_size, chunk_overlap); checked against the collection.
        sync_mode: ``full`` deletes documents missing from the source, ``incremental`` keeps them.
        docs_per_batch: documents per chunk/embed batch (one mapped task each).
        max_batches: at most this many batches (Airflow's ``max_map_length``): ``docs_per_batch`` grows to fit
            (:func:`batch_size_within`; logged, and the plan run's param ``docs_per_batch_used``).
        delta_path: the ingest stage's merge of the listing against the state (``None``: no state).
        carried: documents of objects ingest did not read (unchanged by the merge).
        unread: key ranges (:class:`ragtrail.sources.walk.KeyRange`) of shards whose ingest failed: none of their
            documents is taken for deleted (with a merged state they have no delta rows anyway).
        extra: more facts for ``plan.json`` (the pipeline: the source digest, the failed shards).

    Returns:
        ``{"batches": [{"batch", "docs_path", "docs"}], "deleted_path", "held_path", "delta_path", counts…}``;
        ``held_path`` is the state seeded from a scroll, ``None`` when the committed state is used.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if sync_mode not in SYNC_MODES:
        raise ValueError(f"sync_mode must be one of {SYNC_MODES}, got {sync_mode!r}")
    rec = recorder or Recorder()
    workdir = Path(workdir)
    batch_dir = workdir / "batches"
    batch_dir.mkdir(parents=True, exist_ok=True)
    collection = collection_name(product, version)
    merged = bool(delta_path) and delta_meta(delta_path).get("mode") == "merged"
    seed = None if merged else workdir / HELD_FILE
    existing, meta, scrolls = index_state(location, collection, seed)
    check_config(meta, config, collection)
    sources = docs_path if isinstance(docs_path, list) else [docs_path]  # opened one at a time: 1,000 shards, 1 fd
    used = batch_size_within(docs_per_batch, sum(pq.read_metadata(p).num_rows for p in sources), max_batches,
                             stage="plan", param="docs_per_batch", unit="documents")  # changed ≤ all: never past the cap
    rec.param(sync_mode=sync_mode, docs_per_batch=docs_per_batch, docs_per_batch_used=used, collection=collection,
              plan_from="source state" if merged else "collection scroll" if scrolls else "empty collection")

    counts: Counter[str] = Counter(unchanged=carried)
    # Nothing here holds every document: what the merge found gone (O(deleted)) is checked against the rows read,
    # or the scrolled collection's ids (already held) lose each row read; changed ids stream to their file.
    gone = _gone_candidates(delta_path) if merged else set(existing)
    if unread:
        gone = {d for d in gone if not any(r.holds(d) or r.holds(d.rsplit("#", 1)[0]) for r in unread)}
    read_gone: set[str] = set()
    splitter = _Batches(batch_dir, used)
    with JsonArrayWriter(workdir / CHANGED_FILE) as changed:  # O(change): what index must write
        for rb in (rb for path in sources
                   for rb in pq.ParquetFile(path).iter_batches(batch_size=512, use_threads=False)):
            table = pa.Table.from_batches([rb])
            keep = _changed_rows(table, existing, gone, read_gone, counts)
            if keep:
                for doc_id in table.column("doc_id").take(keep).to_pylist():
                    changed.append(doc_id)
                splitter.write(table.take(keep))
    splitter.close()
    batches = splitter.done
    added, updated, unchanged = counts["added"], counts["updated"], counts["unchanged"]

    missing = sorted(gone - read_gone)
    deleted = missing if sync_mode == "full" else []
    if seed is not None and missing and not deleted:
        keep_missing(seed, {d: existing[d]["hash"] for d in missing})
    (workdir / "deleted_docs.json").write_text(json.dumps(deleted))
    rec.metric(docs_added=added, docs_updated=updated, docs_unchanged=unchanged, docs_deleted=len(deleted),
               docs_missing_kept=len(missing) - len(deleted), batches=len(batches), collection_scrolls=scrolls,
               **({"docs_held": len(existing)} if existing is not None else {}))
    if deleted:
        rec.artifact(workdir / "deleted_docs.json", "plan")
    result = {**(extra or {}), "batches": batches, "deleted_path": str(workdir / "deleted_docs.json"),
              "changed_path": str(workdir / CHANGED_FILE),
              "held_path": str(seed) if seed is not None and seed.exists() else None,
              "delta_path": str(delta_path) if delta_path else None, "collection_scrolls": scrolls,
              "collection": collection, "docs_added": added, "docs_updated": updated, "docs_unchanged": unchanged,
              "docs_deleted": len(deleted)}
    tmp = workdir / (PLAN_FILE + ".partial")
    tmp.write_text(json.dumps(result))
    tmp.replace(workdir / PLAN_FILE)  # written last: its presence means the plan is complete
    return result


def _gone_candidates(delta_path) -> set[str]:
    """Indexed documents the merge found gone (or now quarantined); one read again this run is not gone."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: set[str] = set()
    for rb in pq.ParquetFile(delta_path).iter_batches(batch_size=4096, columns=["doc_id", "status", "prev_status"],
                                                      use_threads=False):
        lost = pc.and_(pc.equal(rb.column(2), "indexed"), pc.not_equal(rb.column(1), "indexed"))
        out.update(rb.column(0).filter(lost).to_pylist())
    return out


def _changed_rows(table, existing: dict[str, dict] | None, gone: set[str], read_gone: set[str],
                  counts: Counter[str]) -> list[int]:
    """Rows of ``table`` whose document is added or updated; counts every row's verdict, notes a read doc_id
    that ``gone`` holds. ``existing`` ``None``: the verdict is the merge's (the ``prev_hash`` ingest wrote)."""
    keep = []
    prev = table.column("prev_hash").to_pylist() if existing is None else None
    for i, (doc_id, h) in enumerate(zip(table.column("doc_id").to_pylist(), table.column("content_hash").to_pylist(),
                                        strict=True)):
        if doc_id in gone:
            read_gone.add(doc_id)
        old = {"hash": prev[i], "mixed": False, "points": 1, "n_chunks": 1} if prev is not None else existing.get(doc_id)
        if old is None or old["hash"] is None:
            counts["added"] += 1
        elif old["hash"] == h and not old["mixed"] and old["points"] == old["n_chunks"]:
            counts["unchanged"] += 1
            continue
        else:
            counts["updated"] += 1
        keep.append(i)
    return keep


class _Batches:
    """Cut a stream of tables into parquet files of ``docs_per_batch`` rows: one per mapped chunk/embed task."""

    def __init__(self, batch_dir: Path, docs_per_batch: int):
        self.batch_dir, self.docs_per_batch = batch_dir, docs_per_batch
        self.done: list[dict] = []
        self.writer, self.rows = None, 0

    def write(self, part) -> None:
        import pyarrow.parquet as pq

        start = 0
        while start < part.num_rows:
            if self.writer is None:
                path = self.batch_dir / f"docs_{len(self.done):05d}.parquet"
                self.done.append({"batch": len(self.done), "docs_path": str(path), "docs": 0})
                self.writer = pq.ParquetWriter(path, part.schema)
            take = min(self.docs_per_batch - self.rows, part.num_rows - start)
            self.writer.write_table(part.slice(start, take))
            self.rows += take
            start += take
            if self.rows >= self.docs_per_batch:
                self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.done[-1]["docs"] = self.rows
        self.writer, self.rows = None, 0


def read_plan(workdir: str | Path) -> dict:
    """The plan of this run's work folder; fails clearly when the plan stage did not complete."""
    path = Path(workdir) / PLAN_FILE
    if not path.exists():
        raise RuntimeError(f"no completed plan in {workdir}: the plan task failed or never ran")
    return json.loads(path.read_text())
