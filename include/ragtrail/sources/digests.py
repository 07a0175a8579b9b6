"""Cheap fingerprints of a source, for noticing that it changed without reading a single document.

A folder's digest covers every file's relative path, size and modification time (hidden entries
skipped, as ingest skips them); an S3 prefix's covers every key and ETag of one listing, through the
same client ingest uses. Equal digests mean "nothing to re-ingest". The last digest seen is kept in a
small JSON file under ``$RAGTRAIL_HOME/watch/`` so a watcher that restarts compares with what it saw
before instead of firing (or staying silent) by accident.

Example::

    digest = source_digest("include/sample_corpus")
    if digest != last_digest(key):
        remember_digest(key, digest)  # ... and start a run
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtrail.core.settings import ragtrail_home
from ragtrail.sources.listing import local_root, parse_s3_uri


def folder_digest(root: str | Path) -> str:
    """SHA-256 over ``path, size, mtime_ns`` of every regular file under ``root`` (hidden ones skipped)."""
    base = local_root(str(root))
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            try:
                st = path.stat()
            except OSError:  # gone between listing and stat: the next poll sees the new state
                continue
            h.update(f"{path.relative_to(base)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def s3_digest(source: str, client: Any) -> str:
    """SHA-256 over ``key, ETag`` of every object under an S3 prefix (one paginated listing, no reads)."""
    bucket, prefix = parse_s3_uri(source)
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    h = hashlib.sha256()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for obj in page.get("Contents", ()):
            h.update(f"{obj['Key']}\0{obj.get('ETag', '')}\n".encode())
    return h.hexdigest()


def source_digest(source: str, s3_client: Callable[[], Any] | None = None) -> str:
    """The digest of a folder, ``file://`` URI or ``s3://`` prefix (``s3_client`` makes the client)."""
    if source.startswith("s3://"):
        if s3_client is None:
            raise ValueError("an s3:// source needs an S3 client")
        return s3_digest(source, s3_client())
    return folder_digest(source)


def _state_file(key: str) -> Path:
    safe = hashlib.sha256(key.encode()).hexdigest()[:24]
    return ragtrail_home() / "watch" / f"{safe}.json"


def last_digest(key: str) -> str | None:
    """The digest last remembered under ``key`` (``None``: never seen, or the file is unreadable)."""
    try:
        return json.loads(_state_file(key).read_text())["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_digest(key: str, digest: str) -> None:
    """Keep ``digest`` under ``key``, atomically (a crash leaves the old or the new value, never half)."""
    path = _state_file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "digest": digest}))
    os.replace(tmp, path)
