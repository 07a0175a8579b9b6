"""A local store's collections and their metadata, read without opening the store.

Opening Qdrant's local mode takes its lock and loads every collection; parsing a DAG file must stay cheap
and must not queue behind a running index task. Qdrant's local mode keeps each collection's configuration,
metadata included, in the folder's ``meta.json``: reading that file is enough to know what each version
was built with. The Edge store (:mod:`ragtrail.store.edge`) keeps one ``collections/<name>/meta.json`` per
collection, read the same way. No ``qdrant_client`` or ``qdrant_edge`` import.
"""

from __future__ import annotations

import json
from pathlib import Path


def local_metadata(path: str | Path) -> dict[str, dict] | None:
    """``{collection: metadata}`` of a local store folder; ``{}`` for a store with nothing built; ``None`` when
    the file cannot be read as expected (being rewritten, another format): then nobody should guess."""
    if (Path(path) / "edge-store.json").exists():
        return _edge_metadata(Path(path))
    meta = Path(path) / "meta.json"
    if not meta.exists():
        return {}
    try:
        collections = json.loads(meta.read_text()).get("collections")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(collections, dict):
        return None
    return {name: dict((config or {}).get("metadata") or {}) for name, config in collections.items()}


def _edge_metadata(root: Path) -> dict[str, dict] | None:
    out = {}
    for meta in (root / "collections").glob("*/meta.json"):
        if meta.parent.name.startswith("."):
            continue
        try:
            out[meta.parent.name] = dict(json.loads(meta.read_text()).get("metadata") or {})
        except (OSError, ValueError, AttributeError):
            return None
    return out
