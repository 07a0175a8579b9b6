"""Stage 1 — ingest: read every document of a source into ``docs.parquet``, quarantine the rest.

Bad input never takes good input down with it: a file (or table row) that cannot be read gets a
manifest row with status ``quarantined`` and a reason, a per-reason metric and an entry in
``quarantine.json``, and the run goes on. Only a source with no usable document at all fails the
stage. The manifest has one row per document: uri, doc_id, bytes, sha256, type, parser, encoding, status,
reason, plus the object's ETag (S3) or mtime (local). For a table row, ``bytes`` and ``sha256``
describe the file the row was read from.

With the version's source state (``state_path``), only new and changed objects are read: the listing is
merged against the state (:mod:`ragtrail.stages.sync_state`), unchanged objects are counted
(``objects_skipped``) and their documents carried, and the delta the plan stage decides from is written.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.sources.listing import SourceItem, iter_source
from ragtrail.sources.parsed import JsonArrayWriter
from ragtrail.sources.parsing import Parsed, ParseError, detect_type, parse_file
from ragtrail.sources.sandbox import DEFAULT_MAX_MEMORY_MB, DEFAULT_TIMEOUT_S, ParseJob, SandboxedParser
from ragtrail.sources.tables import TableSpec
from ragtrail.sources.walk import NotRegularFile, open_regular
from ragtrail.stages.sync_state import SourceDigest, SourceMerge, fingerprint

DOCS_FILE = "docs.parquet"
MANIFEST_FILE = "manifest.jsonl"
QUARANTINE_FILE = "quarantine.json"
DOWNLOADS_DIR = "downloads"
DEFAULT_MAX_DOC_BYTES = 50 * 1024 * 1024
_BATCH = 256


class NoUsableDocuments(RuntimeError):
    """The source held nothing that could be indexed."""


def _docs_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("uri", pa.string()),
            ("text", pa.large_string()),
            ("doc_type", pa.string()),
            ("parser", pa.string()),
            ("sha256", pa.string()),
            ("content_hash", pa.string()),
            ("bytes", pa.int64()),
            ("metadata", pa.string()),  # JSON object of a table row's metadata columns, else null
            ("prev_hash", pa.string()),  # its content hash in the version's state (null: new to the index)
        ]
    )


def content_hash(text: str) -> str:
    """Hash of the extracted text: what decides whether a document changed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a regular file (:class:`~ragtrail.sources.walk.NotRegularFile` for anything else)."""
    h = hashlib.sha256()
    size = 0
    with open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _base(item: SourceItem) -> dict:
    return {"uri": item.uri, "doc_id": item.doc_id, "bytes": item.size, "sha256": None,
            "type": detect_type(item.doc_id), "parser": None, "encoding": None, "etag": item.etag,
            "mtime": item.mtime}


def _job(item: SourceItem, scratch: Path, stats: Counter, *, max_doc_bytes: int, table: TableSpec) -> ParseJob:
    """One source item made ready to parse: fetched, sized and hashed; or its outcome when it cannot be.

    The job's context is ``(item, manifest base, the outcome decided here or None, local copy to delete)``.
    """
    base = _base(item)
    job = ParseJob(item.doc_id, None, table)
    try:
        if (ready := _refusal(item, base, max_doc_bytes)) is not None:
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


def _refusal(item: SourceItem, base: dict, max_doc_bytes: int) -> ParseError | None:
    """Why ``item`` is not read at all (decided from its listing), or ``None``."""
    if item.skip_reason:
        return ParseError(item.skip_reason, f"not read: {item.note or item.skip_reason.replace('_', ' ')}")
    if item.size > max_doc_bytes:
        return ParseError("too_large", f"{item.size} bytes exceeds the limit of {max_doc_bytes}")
    if base["type"] is None:  # decided by name: an image is never downloaded
        return next(iter(parse_file(item.doc_id, Path(item.doc_id))))
    return None


def _outcomes(job: ParseJob, parsed: Iterator[Parsed | ParseError]) -> Iterator[tuple[dict, Parsed | ParseError]]:
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


def ingest_source(
    source: str,
    workdir: str | Path,
    *,
    recorder: Recorder | None = None,
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
    table: TableSpec | None = None,
    s3_client: Callable[[], Any] | None = None,
    parse_timeout_s: float = DEFAULT_TIMEOUT_S,
    parse_max_memory_mb: int = DEFAULT_MAX_MEMORY_MB,
    state_path: str | Path | None = None,
    state_stamp: str | None = None,
) -> dict:
    """Read all documents of ``source`` into ``workdir/docs.parquet``.

    Args:
        source: a local folder, ``file://`` URI or ``s3://bucket/prefix``.
        workdir: the run's work folder; created if missing. S3 objects are downloaded into its
            ``downloads/`` folder one at a time and deleted once parsed.
        recorder: receives params, metrics, the manifest, the quarantine list and the dataset input.
        max_doc_bytes: files larger than this are quarantined unread (``too_large``).
        table: which columns of a table make a row document (default: id/doc_id, text, all others).
        s3_client: makes the S3 client for ``s3://`` sources (Airflow passes the S3Hook's).
        parse_timeout_s: wall-clock budget per file, any format (the sandboxed parser; a file over it is
            quarantined ``parse_timeout``).
        parse_max_memory_mb: address-space limit of the sandboxed parser process (``parse_memory_limit``).
        state_path: the version's committed source state (``None``: none yet: every object is read).
        state_stamp: :func:`ragtrail.stages.sync_state.collection_stamp` of the version's collection; a
            state committed for another collection (or none) is not used.

    Returns:
        ``{"docs_path", "docs", "quarantined", "delta_path", "objects_read", "objects_skipped", …}`` — small
        enough for XCom (``docs``/``quarantined`` count carried documents too).

    Raises:
        NoUsableDocuments: when not a single document could be parsed.

    Example::

        ingest_source("s3://my-bucket/handbook", "/tmp/work", table=TableSpec(text_column="body"))
    """
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    table = table or TableSpec()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    docs_path, manifest_path = workdir / DOCS_FILE, workdir / MANIFEST_FILE
    scratch = workdir / DOWNLOADS_DIR
    schema = _docs_schema()
    rec.param(source=source, max_doc_bytes=max_doc_bytes, id_column=table.id_column or "auto",
              text_column=table.text_column,
              metadata_columns="*" if table.metadata_columns is None else ",".join(table.metadata_columns),
              parse_timeout_s=parse_timeout_s, parse_max_memory_mb=parse_max_memory_mb)

    stats: Counter[str] = Counter()
    skipped: Counter[str] = Counter()  # passed over on purpose: hidden entries, folder markers…
    (workdir / QUARANTINE_FILE).unlink(missing_ok=True)  # a retry starts a fresh list
    progress = Progress("ingest", None, "documents", recorder=rec)  # a listing's length is unknown up front
    digest = SourceDigest()
    merge = SourceMerge(workdir, state_path, state_stamp, fingerprint(source, table, max_doc_bytes), digest)
    with pq.ParquetWriter(docs_path, schema) as writer, manifest_path.open("w") as manifest, \
            JsonArrayWriter(workdir / QUARANTINE_FILE) as quarantine, \
            SandboxedParser(parse_timeout_s, parse_max_memory_mb, on_wait=progress.waiting) as sandbox:
        tally = _Tally(writer, schema, manifest, quarantine, progress, merge)
        jobs = (_job(item, scratch, stats, max_doc_bytes=max_doc_bytes, table=table)
                for item in merge.filter(iter_source(source, s3_client=s3_client, skipped=skipped)))
        # A few files are queued in the parser process: it parses the next while this one is stored.
        for job, parsed in sandbox.parse_stream(jobs):
            _read_item(job.context[0], _outcomes(job, parsed), tally)
            merge.done(job.context[0])
        tally.flush()
    synced = merge.close()
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()

    read, carried, carried_failed = tally.seen, synced["docs_carried"], synced["quarantined_carried"]
    seen, parsed, reasons = read + carried + carried_failed, tally.parsed + carried, tally.reasons
    digest = digest.hexdigest()
    failed = seen - parsed
    rec.metric(docs_seen=seen, docs_parsed=parsed, docs_failed=failed, bytes_in=stats["bytes_in"], docs_read=read,
               **{k: v for k, v in synced.items() if k.startswith(("objects_", "docs_"))})
    rec.metric(**{f"quarantined_{reason}": n for reason, n in reasons.items()})
    rec.metric(**{f"skipped_{kind}": n for kind, n in skipped.items()})
    progress.finish(parsed=parsed, quarantined=failed, MB_read=round(stats["bytes_in"] / 1e6, 1),
                    objects_read=synced["objects_read"], unchanged_skipped=synced["objects_skipped"])
    rec.artifact(manifest_path, "ingest")
    if quarantine.count:
        rec.artifact(workdir / QUARANTINE_FILE, "ingest")
    rec.dataset(name="source", source=source, digest=digest,
                profile={"docs_seen": seen, "docs_parsed": parsed, "docs_failed": failed,
                         "bytes_in": stats["bytes_in"]})
    if parsed == 0:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the source is empty"
        raise NoUsableDocuments(f"no usable documents in {source}: {seen} found ({why})")
    return {"docs_path": str(docs_path), "docs": parsed, "quarantined": failed, "digest": digest, **synced}


def _read_item(item: SourceItem, outcomes: Iterator[tuple[dict, Parsed | ParseError]], tally: _Tally) -> None:
    """Record every document of one source item; an input no parser foresaw costs this file, never the run."""
    while True:
        try:
            base, out = next(outcomes)
        except StopIteration:
            return
        except Exception as err:
            tally.record(item, _base(item), ParseError(
                "parse_crashed", f"reading the file failed: {type(err).__name__}: {err}"[:500]))
            return
        tally.record(item, base, out)


class _Tally:
    """Where each document's outcome goes: a docs.parquet row or a quarantine entry, and a manifest line."""

    def __init__(self, writer, schema, manifest, quarantine: JsonArrayWriter, progress: Progress, merge: SourceMerge):
        self.writer, self.schema, self.manifest, self.quarantine = writer, schema, manifest, quarantine
        self.progress, self.merge = progress, merge
        self.seen = self.parsed = 0
        self.reasons: Counter[str] = Counter()
        self.rows: list[dict] = []

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows.clear()

    def record(self, item: SourceItem, base: dict, out: Parsed | ParseError) -> None:
        self.seen += 1
        entry = {**base, "status": "indexed", "reason": None}
        if out.key is not None:  # a table row
            entry.update(doc_id=f"{item.doc_id}#{out.key}", uri=f"{item.uri}#{quote(out.key, safe='')}")
        if isinstance(out, ParseError):
            entry.update(status="quarantined", reason=out.reason, message=out.message)
            self.reasons[out.reason] += 1
            self.quarantine.append({k: entry[k] for k in ("doc_id", "uri", "reason", "message")})
            self.merge.record(item, entry["doc_id"], "quarantined", entry["sha256"], None)
        else:
            text_hash = content_hash(out.text)
            prev = self.merge.record(item, entry["doc_id"], "indexed", entry["sha256"], text_hash)
            self._add_row(entry, out, text_hash, prev)
        self.progress.update(1)
        self.merge.digest.add(entry["doc_id"], entry["sha256"], entry["status"])
        self.manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def _add_row(self, entry: dict, out: Parsed, text_hash: str, prev: str | None) -> None:
        self.parsed += 1
        entry.update(type=out.doc_type, parser=out.parser, encoding=out.encoding)
        meta = json.dumps(out.metadata, ensure_ascii=False, sort_keys=True, default=str) if out.metadata else None
        self.rows.append({"doc_id": entry["doc_id"], "uri": entry["uri"], "text": out.text,
                          "doc_type": out.doc_type, "parser": out.parser, "sha256": entry["sha256"],
                          "content_hash": text_hash, "bytes": entry["bytes"], "metadata": meta, "prev_hash": prev})
        if len(self.rows) >= _BATCH:
            self.flush()
