"""The vector-store seam: an interface (:mod:`.base`), its implementations (:mod:`.qdrant`, :mod:`.edge`), and
the one resolver (:func:`resolve_store` / :func:`open_store`) every caller uses to find the store.

Importing this package does not import ``qdrant_client``; opening a store does.
"""

from ragtrail.store.base import INDEXED_FIELDS, Hit, Point, Sparse, VectorStore, check_name, collection_name
from ragtrail.store.resolve import MEMORY, StoreSettings, open_store, resolve_store, store_label
from ragtrail.store.versions import (
           ensure_collection,
           list_versions,
           prune_versions,
           put_live,
           vectors_by_hash,
)

__all__ = ["INDEXED_FIELDS", "MEMORY", "Hit", "Point", "Sparse", "StoreSettings", "VectorStore", "check_name",
           "collection_name", "ensure_collection", "list_versions", "open_store", "prune_versions", "put_live",
           "resolve_store", "store_label", "vectors_by_hash"]
