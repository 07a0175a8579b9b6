"""Versions of a product on any store: ``<product>__<version>`` collections behind the ``<product>`` alias."""

from __future__ import annotations

from ragtrail.store.base import VectorStore


def list_versions(store: VectorStore, product: str, points: bool = True) -> list[dict]:
    """Every built version of a product: collection, point count, config, and whether it is live.

    ``points=False``: no counts. A count opens the collection: on the embedded store (Edge) it loads the
    version's whole shard (1.75 s at 80k points), which deciding what to prune or naming what exists never needs.
    """
    live = store.alias_target(product)
    out = []
    for name in store.collections():
        if not name.startswith(f"{product}__"):
            continue
        out.append({"version": name.split("__", 1)[1], "collection": name, "live": name == live,
                    **({"points": store.count(name)} if points else {}), **store.metadata(name)})
    return sorted(out, key=lambda v: v.get("built_at", 0), reverse=True)


def put_live(store: VectorStore, product: str, collection: str, keep_versions: int | None = None) -> list[str]:
    """The store's half of going live: point the product's alias at an existing collection, then (when
    ``keep_versions`` is given) prune all but the live version and the ``keep_versions`` newest others.

    The only place ragtrail moves a store alias; the whole step (the registry too) is
    :func:`ragtrail.models.agreement.go_live`. Returns the collections pruned.
    """
    if not store.exists(collection):
        version = collection.split("__", 1)[1] if collection.startswith(f"{product}__") else collection
        raise LookupError(f"{product} has no version {version!r}; built: "
                          + ", ".join(v["version"] for v in list_versions(store, product, points=False)))
    store.point_alias(product, collection)
    return [] if keep_versions is None else prune_versions(store, product, keep_versions)


def prune_versions(store: VectorStore, product: str, keep: int) -> list[str]:
    """Delete all but the live version and the ``keep`` most recent others; return what was dropped."""
    others = [v for v in list_versions(store, product, points=False) if not v["live"]]
    dropped = [v["collection"] for v in others[keep:]]
    for name in dropped:
        store.delete_collection(name)
    return dropped


def ensure_collection(store: VectorStore, name: str, dimension: int, metadata: dict) -> None:
    """Create the collection, or check that an existing one holds vectors of this dimension."""
    if store.exists(name):
        size = store.dimension(name)
        if size != dimension:
            raise ValueError(f"collection {name} holds {size}-d vectors, this run made {dimension}-d ones: "
                             "use a new version for a new embedder")
        return
    store.create(name, dimension, metadata)


def vectors_by_hash(store: VectorStore, name: str, hashes: list[str]) -> dict[str, list[float]]:
    """Vectors of points whose ``chunk_hash`` is in ``hashes`` (one per hash)."""
    found: dict[str, list[float]] = {}
    for i in range(0, len(hashes), 512):
        for p in store.scroll(name, ["chunk_hash"], where=("chunk_hash", hashes[i : i + 512]), with_vectors=True):
            found.setdefault(p.payload["chunk_hash"], p.vector)
    return found
