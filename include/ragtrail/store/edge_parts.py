"""A large collection of the Edge store in parts: one Edge shard per range of documents.

Qdrant Edge holds one shard per process, and a process that writes a shard holds all of it: its appendable
segment while points go in, and in ``optimize`` everything the HNSW build and the merged segment need — the
index task's memory grew ~14 KB per point at 320k points in one shard (docs/scaling.md). So a collection
made for many points is cut into **parts**, each its own Edge shard of about ``RAGTRAIL_EDGE_PART_POINTS``
points, by ranges of ``doc_id``: part 0 below the first bound, part ``j`` from bound ``j - 1`` on. A document's
points all live in one part (a document is written, updated and deleted in one part). The index stage picks
the bounds when it creates the version, from its chunk batches (each batch's first document and its
points, :func:`bounds_from_batches`): a first build writes the parts one after another, and the writer
lets go of each part once it moves on, so its memory is one part's whatever the corpus. ``optimize`` runs
part by part the same way. Reads fan out: a query runs in every part and the candidates are merged by
score (:func:`merge`) before the hybrid fusion; a part's BM25 IDF is its own part's, as in a sharded
Qdrant collection. A collection without bounds is one part, the shard of before (``shard/``).

Layout inside ``collections/<name>/``: part 0 in ``shard/``, part ``j`` in ``shard-<jjjj>/``; each has its own
lock (``.locks/<name>.lock``, ``.locks/<name>.p<jjjj>.lock``), so two writers of different parts never wait
for each other. No ``qdrant_edge`` import here.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from ragtrail.core import env_kit
from ragtrail.store.base import Hit

PART_FIELD = "doc_id"  # the payload field whose value picks a point's part


def part_points() -> int:
    """Points per part a new collection is cut into (``RAGTRAIL_EDGE_PART_POINTS``; 0: never cut)."""
    return env_kit.EDGE_PART_POINTS.get()


def shard_dir(part: int) -> str:
    """The folder of part ``part`` inside the collection's folder."""
    return "shard" if part == 0 else f"shard-{part:04d}"


def lock_name(name: str, part: int) -> str:
    return f"{name}.lock" if part == 0 else f"{name}.p{part:04d}.lock"


def part_of(bounds: list[str], key) -> int:
    """The part of a point whose :data:`PART_FIELD` is ``key`` (a point without one: part 0)."""
    return bisect_right(bounds, key) if isinstance(key, str) else 0


def bounds_from_batches(batches: Iterable[tuple[str | None, int]], per_part: int) -> list[str]:
    """Lower bounds of parts 1, 2, … from ``(first doc id, points)`` of each chunk batch: a new part begins at
    a batch's first document once the part before holds ``per_part`` points (``per_part`` 0: one part).

    Example::

        bounds_from_batches([("a", 5), ("f", 5), ("k", 5)], 10)  # ["k"]: part 0 holds a…j, part 1 k…
    """
    if per_part <= 0:
        return []
    out: list[str] = []
    held = 0
    for first, points in sorted(b for b in batches if b[0] is not None):
        if held >= per_part and (not out or first > out[-1]):
            out.append(first)
            held = 0
        held += int(points or 0)
    return out


def bounds_of_chunks(chunked: Iterable[dict | None]) -> list[str]:
    """The bounds of a version written from these chunk batches' results (each its ``first_doc`` and its
    ``chunks``; a failed batch's ``None`` left out), a part every :func:`part_points` points."""
    return bounds_from_batches(((c.get("first_doc"), c.get("chunks")) for c in chunked if c), part_points())


def group(points: list, bounds: list[str]) -> dict[int, list]:
    """``points`` (each with a ``payload``) by part, in the order each part first appears, each in its order."""
    out: dict[int, list] = {}
    for p in points:
        out.setdefault(part_of(bounds, (p.payload or {}).get(PART_FIELD)), []).append(p)
    return out


def values_by_part(values: list, bounds: list[str]) -> dict[int, list]:
    """Filter values of :data:`PART_FIELD` by the part that can hold them."""
    out: dict[int, list] = {}
    for v in values:
        out.setdefault(part_of(bounds, v), []).append(v)
    return out


def merge(per_part: list[list[list[Hit]]], limits: list[int]) -> tuple[list[list[Hit]], dict]:
    """Request ``i``'s ``limits[i]`` best hits over every part's answer to it (by score, best first), and
    the part each kept hit came from (``{id: part}``, to fetch payloads from the right shard)."""
    merged, where = [], {}
    for i, limit in enumerate(limits):
        found = [(h.score, part, h) for part, answers in enumerate(per_part) for h in answers[i]]
        found.sort(key=lambda t: -t[0])
        kept = found[:limit]
        where.update((h.id, part) for _, part, h in kept)
        merged.append([h for _, _, h in kept])
    return merged, where
