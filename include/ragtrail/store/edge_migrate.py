"""Move a qdrant-client local-mode store (an earlier release's embedded default) into Qdrant Edge.

A local-mode folder has ``collection/`` and ``meta.json`` at its top. On the first Edge open of such a
folder, every collection — points with vectors and payloads, its metadata — and every alias are copied
into a new Edge store built beside it (``<folder>.edge-migrating``); then the old folder is renamed to
``<folder>.local-mode-backup`` and the new one renamed into place, and one log line says so. A crash
before the swap leaves the old store untouched (the half-built copy is redone); a crash between the two
renames is finished by the next open (the copy carries a ``migrated.json`` only once complete).
The whole move holds the lock local mode itself is opened under, so no local-mode user is mid-write.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ragtrail.core.locks import file_lock
from ragtrail.store.edge_shards import atomic_write_json, fsync_dir

log = logging.getLogger(__name__)


def is_local_mode(root: Path) -> bool:
    return (root / "collection").is_dir() and (root / "meta.json").is_file()


def _sibling(root: Path, suffix: str) -> Path:
    return root.with_name(root.name + suffix)


def _backup_name(root: Path) -> Path:
    backup, n = _sibling(root, ".local-mode-backup"), 2
    while backup.exists():
        backup, n = _sibling(root, f".local-mode-backup-{n}"), n + 1
    return backup


def ensure_edge_layout(root: Path, lock_timeout_s: float, edge_store) -> None:
    """Migrate ``root`` from local mode if it still is one (and finish a migration a crash cut short).

    ``edge_store``: the Edge store class (:class:`ragtrail.store.edge.EdgeStore`), called with a folder."""
    copy = _sibling(root, ".edge-migrating")
    if not is_local_mode(root) and not copy.exists():
        return
    with file_lock(root.parent / f".{root.name}.lock", timeout_s=lock_timeout_s):
        if not root.exists() and (copy / "migrated.json").exists():
            os.rename(copy, root)  # the crash came between the two renames
            fsync_dir(root.parent)
            return
        if not is_local_mode(root):
            shutil.rmtree(copy, ignore_errors=True)
            return
        shutil.rmtree(copy, ignore_errors=True)
        summary = _copy(root, copy, edge_store(copy, lock_timeout_s))
        backup = _backup_name(root)
        os.rename(root, backup)
        os.rename(copy, root)
        fsync_dir(root.parent)
    log.warning("migrated the local-mode store %s to Qdrant Edge (%s); the old store is kept as %s",
                root, ", ".join(f"{c}: {n} points" for c, n in summary["collections"].items()) or "no collections",
                backup)


def _copy(root: Path, copy: Path, new) -> dict:
    from ragtrail.store.qdrant import QdrantStore, connect
    from ragtrail.store.resolve import StoreSettings

    settings = StoreSettings(path=str(root))
    old = QdrantStore(connect(settings), settings)
    summary: dict = {"collections": {}, "aliases": {}}
    try:
        for name in old.collections():
            new.create(name, old.dimension(name), old.metadata(name))
            batch = []
            for point in old.scroll(name, None, with_vectors=True):
                batch.append(point)
                if len(batch) >= 1024:
                    new.upsert(name, batch)
                    batch = []
            new.upsert(name, batch)
            new.finish(name)
            summary["collections"][name] = new.count(name)
        for alias in old.client.get_aliases().aliases:
            summary["aliases"][alias.alias_name] = alias.collection_name
    finally:
        new.close()
        old.close()
    # The copy's pointer file in one write (not an alias move: nobody reads the copy before the swap).
    atomic_write_json(copy / "aliases.json", json.dumps(summary["aliases"], indent=1))
    atomic_write_json(copy / "migrated.json", json.dumps({"from": "qdrant-client local mode", **summary}, indent=1))
    return summary
