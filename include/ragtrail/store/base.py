"""The vector-store interface every stage speaks: collections of points, aliases, filtered scrolls.

A store keeps, per collection, points (an id, one vector, a JSON payload) and the collection's
metadata (the version config the plan stage checks). An alias names one collection and moves in one
atomic call. Implementations: :mod:`ragtrail.store.qdrant`, :mod:`ragtrail.store.edge`. Nothing here
imports a client library.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# Payload fields the plan and index stages filter on; a store that supports payload indexes builds them.
INDEXED_FIELDS = ("doc_id", "chunk_hash")


def check_name(kind: str, value: str) -> str:
    """Products and versions become collection names: keep them to a safe alphabet."""
    if not isinstance(value, str) or not _NAME.match(value) or "__" in value:
        raise ValueError(
            f"{kind} {value!r} must be 1-63 characters of letters, digits, '_', '-', '.', start with a "
            "letter or digit and not contain '__'"
        )
    return value


_COLLECTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_collection(name: str) -> str:
    """A collection name safe as a folder name (stores that keep one folder per collection check it)."""
    if not isinstance(name, str) or not _COLLECTION.match(name):
        raise ValueError(f"collection {name!r} must be 1-128 characters of letters, digits, '_', '-', '.'")
    return name


def collection_name(product: str, version: str) -> str:
    return f"{check_name('product', product)}__{check_name('version', version)}"


@dataclass
class Point:
    """One stored chunk: ``id`` (a UUID string or an int), its vector and its payload."""

    id: Any
    vector: list[float] | None = None
    payload: dict = field(default_factory=dict)


@dataclass
class Hit:
    """One query result, best first: the point's id, its similarity score and (selected) payload."""

    id: Any
    score: float
    payload: dict = field(default_factory=dict)


class VectorStore(Protocol):
    """What the stages need of a vector store. Cosine similarity; vectors L2-normalised by the embedder."""

    def exists(self, name: str) -> bool: ...
    def dimension(self, name: str) -> int: ...
    def metadata(self, name: str) -> dict: ...
    def create(self, name: str, dimension: int, metadata: dict) -> None: ...
    def delete_collection(self, name: str) -> None: ...
    def collections(self) -> list[str]: ...
    def count(self, name: str) -> int: ...
    def upsert(self, name: str, points: list[Point]) -> None: ...
    def delete(self, name: str, ids: list) -> None: ...
    # Delete every point whose payload ``field`` is one of ``values`` (no read first; batched by the store).
    def delete_where(self, name: str, field: str, values: list) -> None: ...
    def scroll(self, name: str, fields: list[str] | None, *, where: tuple[str, list] | None = None,
               with_vectors: bool = False) -> Iterator[Point]: ...
    def query(self, name: str, vector: list[float], k: int, fields: list[str] | bool = True) -> list[Hit]: ...
    def alias_target(self, alias: str) -> str | None: ...
    def point_alias(self, alias: str, collection: str) -> None: ...
    def finish(self, name: str) -> None: ...  # a version's writes are done: build its index (may be a no-op)
    def close(self) -> None: ...
