"""Where documents come from: list a source lazily, one item at a time.

A source is a local folder (``/path`` or ``file:///path``) or an S3 prefix (``s3://bucket/prefix``).
Listing streams: a folder of 100k files or a prefix of 100k keys is never held in memory (S3 is read
one page of at most 1,000 keys at a time). Items know their document id (path relative to the source
root) and how to get their bytes as a local file. Nothing is followed or written outside its root:
symlinks leaving the root are never followed, and S3 keys that could name a path outside it (``..``,
``//``, a leading ``/``) are flagged, never downloaded.

S3 needs a boto3-style client (``get_paginator``, ``head_object``, ``download_file``). Under Airflow
the DAG passes one made by the Amazon provider's ``S3Hook`` (see ``ragtrail_airflow.rag.s3``); a notebook
may pass ``boto3.client("s3")`` or nothing, which means exactly that.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from ragtrail.sources.walk import KeyRange, SourceItem, iter_local_items

S3_PAGE_SIZE = 1000  # S3's own maximum per ListObjectsV2 call
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def local_root(source: str) -> Path:
    """Return the folder a local source string names (plain path or ``file://`` URI)."""
    if source.startswith("file://"):
        source = urlparse(source).path
    # realpath, not Path.resolve(): on Python 3.11 resolve() raises on a symlink loop.
    return Path(os.path.realpath(Path(source).expanduser()))


def iter_local(source: str, skipped: Counter | None = None, key_range: KeyRange | None = None) -> Iterator[SourceItem]:
    """Yield every regular file under a local folder in a stable (sorted) order; never raises for one entry.

    Hidden files and folders (``.git``, ``.DS_Store``) are skipped and counted in ``skipped``. Symlink
    loops, dangling links, links leaving the root, FIFOs, sockets and devices are yielded with a
    ``skip_reason`` instead of being read; a symlinked folder inside the root is skipped, its files are
    listed under their real path (see :mod:`ragtrail.sources.walk`). ``key_range``: one shard's keys only.
    """
    return iter_local_items(local_root(source), skipped, key_range)


def parse_s3_uri(source: str) -> tuple[str, str]:
    """Split ``s3://bucket/prefix`` into ``(bucket, prefix)``."""
    parsed = urlparse(source)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 URI: {source!r} (expected s3://bucket/prefix)")
    if "@" in parsed.netloc:
        raise ValueError("credentials do not belong in the source URI: use an Airflow connection")
    return parsed.netloc, parsed.path.lstrip("/")


def unsafe_key(key: str) -> bool:
    """Whether an S3 key could name a path outside its root if written to disk as is.

    ``..`` and ``.`` segments, empty segments (``//``), a leading ``/``, backslashes and control
    characters are all refused: such a key is quarantined, never downloaded.
    """
    if not key or key.startswith("/") or "//" in key or _UNSAFE_CHARS.search(key):
        return True
    return any(part in (".", "..") for part in key.split("/"))


def iter_s3(source: str, client: Any, *, page_size: int = S3_PAGE_SIZE,
            skipped: Counter | None = None, key_range: KeyRange | None = None) -> Iterator[SourceItem]:
    """Yield every object under an S3 prefix, one listing page at a time, in key order.

    The prefix is read as a folder (``s3://b/docs`` lists ``docs/…``, not ``docs2/…``); when nothing
    is under it, it may name a single object. Empty folder markers (keys ending in ``/``) and hidden
    keys are skipped and counted in ``skipped``; unsafe keys (:func:`unsafe_key`) are yielded with
    ``skip_reason="unsafe_key"``, a key ending in ``/`` that holds bytes with ``not_a_regular_file``.
    ``key_range`` (one shard): the listing starts after the range's first key (``StartAfter``) and stops at
    the first key past it, so a shard lists only its own pages.

    Example::

        for item in iter_s3("s3://my-bucket/handbook", boto3.client("s3")):
            print(item.doc_id, item.etag)
    """
    bucket, prefix = parse_s3_uri(source)
    folder = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    found = False
    skipped = skipped if skipped is not None else Counter()
    span = key_range or KeyRange()
    start = {"StartAfter": folder + span.after} if span.after is not None else {}
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=folder, PaginationConfig={"PageSize": page_size}, **start)
    for page in pages:
        for obj in page.get("Contents", ()):
            found = True
            rel = obj["Key"][len(folder):]
            if span.past(rel):
                return
            if not span.holds(rel):  # a key S3 lists before StartAfter's: never expected, never read twice
                continue
            item = _s3_item(client, bucket, obj["Key"], rel, obj, skipped)
            if item is not None:
                yield item
    if not found and span.whole and prefix and not prefix.endswith("/"):
        yield from _s3_single(client, bucket, prefix, skipped)


def _s3_single(client: Any, bucket: str, key: str, skipped: Counter) -> Iterator[SourceItem]:
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as err:  # botocore's ClientError: 404 or 403
        raise FileNotFoundError(f"nothing at s3://{bucket}/{key} (no object, no prefix): {err}") from err
    obj = {"Key": key, "Size": head["ContentLength"], "ETag": head.get("ETag"),
           "LastModified": head.get("LastModified")}
    item = _s3_item(client, bucket, key, key.rsplit("/", 1)[-1], obj, skipped)
    if item is not None:
        yield item


def _s3_item(client: Any, bucket: str, key: str, rel: str, obj: dict, skipped: Counter) -> SourceItem | None:
    uri = f"s3://{bucket}/{quote(key, safe='/')}"
    etag = str(obj.get("ETag") or "").strip('"') or None
    modified = obj.get("LastModified")
    mtime = modified.astimezone(UTC).isoformat() if isinstance(modified, datetime) else None
    try:
        size = max(int(obj.get("Size") or 0), 0)
    except (TypeError, ValueError):
        size = 0
    if unsafe_key(key) or (rel and unsafe_key(rel)):
        return SourceItem(rel or key, uri, size, etag or "", None, "unsafe_key", etag, mtime,
                          note="the key could name a path outside the prefix: not downloaded")
    if any(part.startswith(".") for part in rel.split("/")):
        skipped["hidden"] += 1  # like the local walk
        return None
    if not rel or rel.endswith("/"):
        if size:
            return SourceItem(rel or key, uri, size, etag or "", None, "not_a_regular_file", etag, mtime,
                              note=f"a key ending in '/' (a folder marker) that holds {size} bytes")
        skipped["folder_marker"] += 1  # what a console's "create folder" leaves
        return None

    def fetch(dest: Path) -> None:
        client.download_file(bucket, key, str(dest))

    return SourceItem(rel, uri, size, etag or "", None, None, etag, mtime, fetch)


def iter_source(source: str, *, s3_client: Callable[[], Any] | None = None,
                skipped: Counter | None = None, key_range: KeyRange | None = None) -> Iterator[SourceItem]:
    """Yield the items of any supported source string.

    Args:
        source: a folder, ``file://`` URI or ``s3://bucket/prefix``.
        s3_client: makes the S3 client (called once, only for ``s3://`` sources); default
            ``boto3.client("s3")``.
        skipped: counts what the listing passed over on purpose (hidden entries, folder markers…).
        key_range: one shard of the source (:class:`~ragtrail.sources.walk.KeyRange`): only its keys are listed.
    """
    scheme = urlparse(source).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
        return iter_local(source, skipped, key_range)
    if scheme == "s3":
        parse_s3_uri(source)  # fail on a malformed URI before any connection is made
        if s3_client is None:
            import boto3

            client = boto3.client("s3")
        else:
            client = s3_client()
        return iter_s3(source, client, skipped=skipped, key_range=key_range)
    raise ValueError(f"unsupported source {source!r}: use a local folder, file:// URI or s3://bucket/prefix")
