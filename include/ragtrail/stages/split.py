"""Stage 0 — split: cut the source into shards of about ``docs_per_shard`` objects, each a range of keys.

A shard is a :class:`~ragtrail.sources.walk.KeyRange` (``after < key <= upto``, the first and last ranges
open), so one mapped ingest task per shard lists only its own keys (S3: ``StartAfter`` and a stop at the
range's end; a folder: the walk skips the subfolders before the range and ends past it), reads only its
new and changed objects and merges them against only its rows of the version's source state. Nothing the
split keeps grows with the corpus beyond one key per shard.

Where the boundaries come from, cheapest first:

- the version's committed source state in parts (:mod:`ragtrail.stages.state_parts`): its **shard map** — the
  parts' key ranges, reused as they are, so that each ingest shard reads exactly one part and the commit
  rewrites only the parts whose documents changed. Only a part grown past ``REBALANCE`` × ``docs_per_shard``
  keys is cut again (along its own keys: that one part is read), and neighbours that shrank below
  ``docs_per_shard`` / ``REBALANCE`` are joined while they fit in one shard; no request to the source;
- a one-file state of an earlier release (its keys, in order: one SQLite cursor) — keys added since fall
  into the open first/last range or between two boundaries;
- otherwise one listing of the source, keys only (no object is read) — a first build, or a state of another
  source.

At most ``max_shards`` shards (Airflow's ``[core] max_map_length``: one mapped ingest task each): past it the
shards grow (``docs_per_shard_used`` on the split run, and a log line). The result is ``split.json`` in the
work folder and, for XCom, only the list of shard numbers (``[0, 1, …]``: ~5 bytes a shard, 1,024 shards in
5 KB); each ingest task reads its range from the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ragtrail.core.recorder import Recorder
from ragtrail.sources.walk import KeyRange

SPLIT_FILE = "split.json"
DEFAULT_DOCS_PER_SHARD = 10_000
REBALANCE = 2  # a part is re-cut past this many times docs_per_shard keys, joined below docs_per_shard / this

log = logging.getLogger(__name__)


def boundaries(keys: Iterable[str], docs_per_shard: int, max_shards: int | None = None) -> tuple[list[str], int, int]:
    """The last key of every shard but the last, cutting ``keys`` (in key order) every ``docs_per_shard``.

    Past ``max_shards`` the shards double in size (every other boundary is dropped) as often as needed;
    memory is one key per shard. Returns ``(boundaries, docs per shard used, keys seen)``.

    Example::

        boundaries(["a", "b", "c", "d", "e"], 2)  # (["b", "d"], 2, 5): shards ≤b, (b, d], >d
    """
    per = max(int(docs_per_shard), 1)
    cap = max(int(max_shards), 1) if max_shards else None
    cuts: list[str] = []
    n, last = 0, None
    for key in keys:
        n, last = n + 1, key
        if n % per == 0:
            cuts.append(key)
            if cap is not None and len(cuts) + 1 > cap:  # one shard more than the cuts: grow them
                cuts, per = cuts[1::2], per * 2
    # A cut on the very last key would leave an empty last shard: drop it.
    if cuts and cuts[-1] == last:
        cuts.pop()
    return cuts, per, n


def shard_ranges(cuts: list[str]) -> list[KeyRange]:
    """The key ranges the boundaries make: ``(None, c0], (c0, c1], …, (c_last, None)``."""
    edges: list[str | None] = [None, *cuts, None]
    return [KeyRange(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def shards_from_parts(state, docs_per_shard: int, max_shards: int | None) -> tuple[list[KeyRange], int] | None:
    """The shards of a state in parts: its parts' ranges, a part past ``REBALANCE`` × ``docs_per_shard`` keys cut
    along its own keys, small neighbours joined; ``None`` (cut from the keys instead) for a one-file state, or
    when the map would exceed ``max_shards``. Returns ``(ranges, keys)``."""
    from ragtrail.stages.state_parts import range_of
    from ragtrail.stages.sync_state import state_keys

    if state is None:
        return None
    per, small = max(int(docs_per_shard), 1), max(int(docs_per_shard), 1) / REBALANCE
    out: list[list] = []  # [after, upto, keys, joinable]
    total = 0
    for part in state.parts:
        r, k = range_of(part), int(part.get("keys", 0))
        total += k
        if k > REBALANCE * per:  # grown: cut it again (this part alone is read)
            cuts, _, _ = boundaries(state_keys(state, r), per)
            edges = [r.after, *cuts, r.upto]
            out += [[edges[i], edges[i + 1], per, False] for i in range(len(edges) - 1)]
        elif out and out[-1][3] and (out[-1][2] < small or k < small) and out[-1][2] + k <= per:
            out[-1][1], out[-1][2] = r.upto, out[-1][2] + k  # join a shrunk neighbour
        else:
            out.append([r.after, r.upto, k, True])
    if max_shards and len(out) > max_shards:
        return None
    return [KeyRange(a, u) for a, u, _, _ in out], total


def split_source(
    source: str,
    workdir: str | Path,
    *,
    docs_per_shard: int = DEFAULT_DOCS_PER_SHARD,
    max_shards: int | None = None,
    s3_client: Callable[[], Any] | None = None,
    state_path: str | Path | None = None,
    state_stamp: str | None = None,
    state_fingerprint: str | None = None,
    recorder: Recorder | None = None,
    extra: dict | None = None,
) -> dict:
    """Cut ``source`` into shards; write ``workdir/split.json``.

    Args:
        docs_per_shard: objects per shard (one mapped ingest task each).
        max_shards: at most this many shards (Airflow's ``max_map_length``); the shards grow to fit.
        state_path / state_stamp / state_fingerprint: the version's committed source state, the stamp of
            its collection and how this run reads objects (:func:`ragtrail.stages.sync_state.fingerprint`):
            when the state is this collection's and this source's, its keys give the boundaries and the
            source is not listed.
        extra: more facts every shard reads from ``split.json`` (the pipeline: the collection's stamp).

    Returns:
        ``{"split_path", "shards", "split_from", "keys", "docs_per_shard_used"}``.
    """
    from collections import Counter

    from ragtrail.core.statefile import load_local
    from ragtrail.sources.listing import iter_source
    from ragtrail.stages.sync_state import state_keys, state_meta

    rec = recorder or Recorder()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meta = state_meta(state_path)
    from_state = bool(meta) and state_stamp is not None and meta.get("stamp") == state_stamp and (
        state_fingerprint is None or meta.get("fingerprint") == state_fingerprint)
    mapped = shards_from_parts(load_local(state_path), docs_per_shard, max_shards) if from_state else None
    if mapped is not None:
        ranges, n = mapped
        used = docs_per_shard
    else:
        if from_state:
            keys: Iterable[str] = state_keys(state_path)
        else:
            keys = (item.doc_id for item in iter_source(source, s3_client=s3_client, skipped=Counter()))
        cuts, used, n = boundaries(keys, docs_per_shard, max_shards)
        ranges = shard_ranges(cuts)
    if used != docs_per_shard:
        log.warning("split: %s keys at docs_per_shard %s would make more than %s shards (Airflow's max_map_length): "
                    "%s keys per shard instead (raise [core] max_map_length to keep smaller shards)",
                    f"{n:,}", f"{docs_per_shard:,}", max_shards, f"{used:,}")
    split_from = "source state" if from_state else "listing"
    out = {**(extra or {}), "source": source, "split_from": split_from, "keys": n, "docs_per_shard": docs_per_shard,
           "docs_per_shard_used": used,
           "shards": [{"shard": i, "after": r.after, "upto": r.upto} for i, r in enumerate(ranges)]}
    path = workdir / SPLIT_FILE
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)
    rec.param(docs_per_shard=docs_per_shard, docs_per_shard_used=used, split_from=split_from)
    rec.metric(shards=len(ranges), **({"keys_in_state": n} if from_state else {"keys_listed": n}))
    return {"split_path": str(path), "shards": len(ranges), "split_from": split_from, "keys": n,
            "docs_per_shard_used": used}


def read_split(split_path: str | Path) -> tuple[list[KeyRange], str | None]:
    """Every shard's key range, in shard order, and the collection's stamp, from ``split.json``."""
    data = json.loads(Path(split_path).read_text())
    return [KeyRange(row["after"], row["upto"]) for row in data["shards"]], data.get("state_stamp")


def read_shard(split_path: str | Path, shard: int) -> tuple[KeyRange, int, str | None]:
    """Shard ``shard``'s key range, the number of shards and the collection's stamp, from ``split.json``."""
    ranges, stamp = read_split(split_path)
    if not 0 <= shard < len(ranges):
        raise ValueError(f"shard {shard} is not one of the {len(ranges)} shards of this run's split")
    return ranges[shard], len(ranges), stamp


def shard_label(shard: int, of: int, key_range: KeyRange) -> str:
    """What the Airflow UI shows for a shard's map index: ``"3 of 16: docs/b.md … docs/f.md"``."""
    first = "…" if key_range.after is None else f"after {key_range.after}"
    last = "…" if key_range.upto is None else f"to {key_range.upto}"
    label = f"{shard + 1} of {of}" + ("" if key_range.whole else f": {first} {last}")
    return label[:240]


_SUMMED = ("docs", "quarantined", "objects_read", "objects_skipped", "objects_new", "objects_changed",
           "objects_deleted", "docs_carried", "quarantined_carried", "docs_gone")


def combined_digest(digests: Iterable[str | None]) -> str:
    """The source digest of every shard together: the same as one unsharded ingest's
    (:class:`ragtrail.stages.sync_state.SourceDigest` is an order-free sum)."""
    return f"{sum(int(d, 16) for d in digests if d) % (1 << 64):016x}"


def gather(results: list[dict], workdir: str | Path, ranges: list[KeyRange] | None = None) -> dict:
    """The ingest shards' results as one: docs files in shard order, their deltas concatenated into one
    (streamed, in key order: the shards are consecutive key ranges) that records every shard's range
    (``ranges``: the split's; the commit cuts the state's parts along them), counts summed, digests combined.

    The result of a split into one shard is returned as it is.
    """
    import pyarrow.parquet as pq

    from ragtrail.stages.sync_state import DELTA_FILE

    results = [r for r in results if r]
    if len(results) == 1 and (ranges is None or len(ranges) == 1):
        return {**results[0], "docs_paths": [results[0]["docs_path"]]}
    out: dict = {k: sum(int(r.get(k) or 0) for r in results) for k in _SUMMED}
    out["docs_paths"] = [r["docs_path"] for r in results]
    out["digest"] = combined_digest(r.get("digest") for r in results)
    deltas = [r["delta_path"] for r in results if r.get("delta_path")]
    if deltas:
        path = Path(workdir) / DELTA_FILE
        schema = pq.read_schema(deltas[0])
        if ranges is not None:
            schema = schema.with_metadata({**(schema.metadata or {}),
                                           b"ranges": json.dumps([[r.after, r.upto] for r in ranges]).encode()})
        with pq.ParquetWriter(path, schema) as writer:
            for delta in deltas:
                with pq.ParquetFile(delta) as part:
                    for rb in part.iter_batches(batch_size=4096, use_threads=False):
                        writer.write_batch(rb)
        out["delta_path"] = str(path)
    if out["docs"] == 0:
        out["empty_reason"] = next((r["empty_reason"] for r in results if r.get("empty_reason")), "no usable documents")
    return out
