"""Pre-flight: the cheap checks that tell, before any work, that a run cannot succeed.

Each check returns ``None`` when it passes, else one line in plain words naming what is wrong and what to
do. They read nothing but a folder's entry, one S3 listing of at most one key, and the store's list of
collections, so a run that would fail on them fails in a second, not after a retry.

Example::

    problems = [p for p in (source_problem("docs/"), store_problem(settings)) if p]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ragtrail.sources.listing import local_root, parse_s3_uri

# Answers that will not change on a second try: a pre-flight reports them at once.
DEFINITE = {"NoSuchBucket", "AccessDenied", "403", "404", "InvalidAccessKeyId", "SignatureDoesNotMatch",
            "InvalidBucketName", "AllAccessDisabled"}
TRIES, PAUSE_S = 3, 1.0


def _code(err: BaseException) -> str | None:
    response = getattr(err, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _transient(err: BaseException) -> bool:
    """A failure a second try may not see: a refused or timed-out connection, a 5xx, throttling — not a
    definite answer (no such bucket, no permission, no credentials, a bad request)."""
    if _code(err) in DEFINITE or type(err).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return False
    return not isinstance(err, ValueError | LookupError | PermissionError | TypeError)


def answer(call: Callable[[], Any], tries: int | None = None, pause_s: float | None = None) -> Any:
    """``call()``, tried again (after ``pause_s``, then twice that) while it fails transiently: a source or
    store busy for a second — a loaded machine, a server restarting — is not a failed pre-flight."""
    tries, pause_s = tries or TRIES, PAUSE_S if pause_s is None else pause_s
    for attempt in range(tries):
        try:
            return call()
        except Exception as err:
            if attempt == tries - 1 or not _transient(err):
                raise
            time.sleep(pause_s * 2**attempt)
    raise AssertionError("unreachable")


def local_source_problem(source: str) -> str | None:
    """Why a local source (folder, file or ``file://`` URI) cannot be read, or ``None``."""
    root = local_root(source)
    if not root.exists():
        return f"source {source} does not exist: give an existing folder, file or s3://bucket/prefix"
    if root.is_dir():
        if not os.access(root, os.R_OK | os.X_OK):
            return f"source {source} is not readable: no permission to list the folder"
        return None
    if not os.access(root, os.R_OK):
        return f"source {source} is not readable: no permission to read the file"
    return None


def s3_source_problem(source: str, client: Any, conn_id: str) -> str | None:
    """Why an ``s3://bucket/prefix`` source does not answer through ``client`` (one listing of one key)."""
    bucket, prefix = parse_s3_uri(source)
    try:
        found = answer(lambda: client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1))
    except Exception as err:  # botocore's ClientError, EndpointConnectionError, NoCredentialsError…
        code = _code(err)
        if code == "NoSuchBucket":
            return f"source {source}: bucket {bucket} does not exist (through connection {conn_id})"
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return f"source {source}: connection {conn_id} may not list bucket {bucket} ({code})"
        return f"source {source} does not answer through connection {conn_id}: {_first_line(err)}"
    if not found.get("KeyCount") and not found.get("Contents"):
        return f"source {source}: nothing under prefix '{prefix}' in bucket {bucket}"
    return None


def source_problem(source: str, s3_client: Callable[[], Any] | None = None, conn_id: str = "aws_default") -> str | None:
    """Why ``source`` cannot be read, or ``None``: a local path must exist and be readable; an S3 prefix
    must list at least one key through the connection's client (``s3_client`` makes it)."""
    scheme = urlparse(source).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        return local_source_problem(source)
    if scheme != "s3":
        return f"source {source}: unsupported, use a local folder, file:// URI or s3://bucket/prefix"
    try:
        parse_s3_uri(source)
        client = s3_client() if s3_client is not None else None
    except Exception as err:  # a malformed URI, a connection that does not resolve
        return f"source {source}: {_first_line(err)}"
    if client is None:
        return None
    return s3_source_problem(source, client, conn_id)


def store_problem(open_store: Callable[[], Any], where: str) -> str | None:
    """Why the vector store (``where``: its secret-free description) does not answer, or ``None``."""
    def listed():
        with open_store() as store:
            return store.collections()

    try:
        answer(listed)
    except Exception as err:
        return f"the Qdrant store at {where} does not answer: {_first_line(err)}"
    return None


def _first_line(err: BaseException) -> str:
    line = next((s.strip() for s in str(err).splitlines() if s.strip()), "")
    text = f"{type(err).__name__}: {line}" if line else type(err).__name__
    return text if len(text) <= 200 else text[:199] + "…"
