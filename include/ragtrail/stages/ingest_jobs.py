"""The ingest stage's per-object preparation: fetch, size and hash each listed item, or decide from its listing
alone why it is not read (too large, an image, an unsafe key…); then the parser's outcomes of one item."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ragtrail.sources.listing import SourceItem
from ragtrail.sources.parsing import Parsed, ParseError, detect_type, parse_file
from ragtrail.sources.sandbox import ParseJob
from ragtrail.sources.tables import TableSpec
from ragtrail.sources.walk import NotRegularFile, open_regular


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a regular file (:class:`~ragtrail.sources.walk.NotRegularFile` for anything else)."""
    h = hashlib.sha256()
    size = 0
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def base_entry(item: SourceItem) -> dict:
    return {"uri": item.uri, "doc_id": item.doc_id, "bytes": item.size, "sha256": None,
            "type": detect_type(item.doc_id), "parser": None, "encoding": None, "etag": item.etag,
            "mtime": item.mtime}


def prepare_job(item: SourceItem, scratch: Path, stats: Counter, *, max_doc_bytes: int, table: TableSpec) -> ParseJob:
    """One source item made ready to parse: fetched, sized and hashed; or its outcome when it cannot be.

    The job's context is ``(item, manifest base, the outcome decided here or None, local copy to delete)``.
    """
    base = base_entry(item)
    job = ParseJob(item.doc_id, None, table)
    try:
        if (ready := refusal(item, base, max_doc_bytes)) is not None:
            job.context = (item, base, ready, None)
            return job
        path = item.local_file(scratch)
    except Exception as err:  # OSError locally; botocore errors (object gone, access denied) for S3
        job.context = (item, base, ParseError("unreadable", f"cannot fetch {item.uri}: {type(err).__name__}: {err}"[:500]), None)
        return job
    download = path if item.path is None else None  # downloads live only as long as their parse
    try:
        size = path.stat().st_size
        if size > max_doc_bytes:  # it grew since it was listed
            outcome = ParseError("too_large", f"{size} bytes exceeds the limit of {max_doc_bytes}")
        else:
            size, sha = file_sha256(path)
            base.update(bytes=size, sha256=sha)
            stats["bytes_in"] += size
            job.path, outcome = path, None
    except NotRegularFile as err:  # swapped for a FIFO or a link since it was listed
        outcome = ParseError("not_a_regular_file", f"not read: {err.strerror}")
    except OSError as err:  # unreadable file: permissions, vanished mid-run
        outcome = ParseError("unreadable", f"{type(err).__name__}: {err.strerror or err}")
    job.context = (item, base, outcome, download)
    return job


def refusal(item: SourceItem, base: dict, max_doc_bytes: int) -> ParseError | None:
    """Why ``item`` is not read at all (decided from its listing), or ``None``."""
    if item.skip_reason:
        return ParseError(item.skip_reason, f"not read: {item.note or item.skip_reason.replace('_', ' ')}")
    if item.size > max_doc_bytes:
        return ParseError("too_large", f"{item.size} bytes exceeds the limit of {max_doc_bytes}")
    if base["type"] is None:  # decided by name: an image is never downloaded
        return next(iter(parse_file(item.doc_id, Path(item.doc_id))))
    return None


def job_outcomes(job: ParseJob, parsed: Iterator[Parsed | ParseError]) -> Iterator[tuple[dict, Parsed | ParseError]]:
    """``(manifest base, outcome)`` for every document of one job."""
    _, base, ready, download = job.context
    try:
        if ready is not None:
            yield base, ready
        else:
            yield from ((base, out) for out in parsed)
    finally:
        if download is not None:
            download.unlink(missing_ok=True)
