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
from ragtrail.sources.parser_pool import ParserPool, default_workers
from ragtrail.sources.parsing import Parsed, ParseError
from ragtrail.sources.sandbox import DEFAULT_MAX_MEMORY_MB, DEFAULT_TIMEOUT_S
from ragtrail.sources.tables import TableSpec
from ragtrail.sources.walk import KeyRange
from ragtrail.stages.ingest_jobs import base_entry, job_outcomes, prepare_job
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
    parse_workers: int | None = None,
    state_path: str | Path | None = None,
    state_stamp: str | None = None,
    key_range: KeyRange | None = None,
    shard: str | None = None,
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
        parse_max_memory_mb: address-space limit of each sandboxed parser process (``parse_memory_limit``).
        parse_workers: parser processes that parse files side by side (``None``:
            :func:`ragtrail.sources.parser_pool.default_workers`); the outputs are the same for any number.
        state_path: the version's committed source state (``None``: none yet: every object is read).
        state_stamp: :func:`ragtrail.stages.sync_state.collection_stamp` of the version's collection; a
            state committed for another collection (or none) is not used.
        key_range: one shard of the source (:mod:`ragtrail.stages.split`): only its keys are listed, read and
            merged against the state's rows of the same range.
        shard: the shard's label (``"3 of 16"``) when the source is split: its artifacts go under
            ``ingest/shard-<n>/``, and a shard with no usable document does not fail (the plan stage fails
            the run when no shard has one).

    Returns:
        ``{"docs_path", "docs", "quarantined", "delta_path", "objects_read", "objects_skipped", …}`` — small
        enough for XCom (``docs``/``quarantined`` count carried documents too).

    Raises:
        NoUsableDocuments: when not a single document could be parsed (unsharded: ``shard`` is ``None``).

    Example::

        ingest_source("s3://my-bucket/handbook", "/tmp/work", table=TableSpec(text_column="body"))
    """
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    workers = parse_workers or default_workers()
    table = table or TableSpec()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    docs_path, manifest_path = workdir / DOCS_FILE, workdir / MANIFEST_FILE
    scratch = workdir / DOWNLOADS_DIR
    schema = _docs_schema()
    rec.param(source=source, max_doc_bytes=max_doc_bytes, id_column=table.id_column or "auto",
              text_column=table.text_column,
              metadata_columns="*" if table.metadata_columns is None else ",".join(table.metadata_columns),
              parse_timeout_s=parse_timeout_s, parse_max_memory_mb=parse_max_memory_mb, parse_workers=workers)

    stats: Counter[str] = Counter()
    skipped: Counter[str] = Counter()  # passed over on purpose: hidden entries, folder markers…
    (workdir / QUARANTINE_FILE).unlink(missing_ok=True)  # a retry starts a fresh list
    progress = Progress("ingest", None, "documents", recorder=rec)  # a listing's length is unknown up front
    digest = SourceDigest()
    merge = SourceMerge(workdir, state_path, state_stamp, fingerprint(source, table, max_doc_bytes), digest, key_range)
    with pq.ParquetWriter(docs_path, schema) as writer, manifest_path.open("w") as manifest, \
            JsonArrayWriter(workdir / QUARANTINE_FILE) as quarantine, \
            ParserPool(workers, parse_timeout_s, parse_max_memory_mb, on_wait=progress.waiting) as parsers:
        tally = _Tally(writer, schema, manifest, quarantine, progress, merge)
        jobs = (prepare_job(item, scratch, stats, max_doc_bytes=max_doc_bytes, table=table)
                for item in merge.filter(iter_source(source, s3_client=s3_client, skipped=skipped, key_range=key_range)))
        # A few files are queued in each parser process: they parse the next ones while this one is stored.
        for job, parsed in parsers.parse_stream(jobs):
            _read_item(job.context[0], job_outcomes(job, parsed), tally)
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
    where = "ingest" if shard is None else f"ingest/shard-{shard.split()[0]}"
    rec.artifact(manifest_path, where)
    if quarantine.count:
        rec.artifact(workdir / QUARANTINE_FILE, where, every_map_index=True)  # every shard's bad input, on record
    rec.dataset(name="source" if shard is None else f"source, shard {shard}", source=source, digest=digest,
                profile={"docs_seen": seen, "docs_parsed": parsed, "docs_failed": failed,
                         "bytes_in": stats["bytes_in"]})
    if parsed == 0 and shard is None:
        raise NoUsableDocuments(_why_empty(source, seen, reasons))
    return {"docs_path": str(docs_path), "docs": parsed, "quarantined": failed, "digest": digest, **synced,
            **({"shard": shard, "empty_reason": _why_empty(source, seen, reasons)} if shard is not None and parsed == 0
               else {})}


def _why_empty(source: str, seen: int, reasons: Counter) -> str:
    why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the source is empty"
    return f"no usable documents in {source}: {seen} found ({why})"


def _read_item(item: SourceItem, outcomes: Iterator[tuple[dict, Parsed | ParseError]], tally: _Tally) -> None:
    """Record every document of one source item; an input no parser foresaw costs this file, never the run."""
    while True:
        try:
            base, out = next(outcomes)
        except StopIteration:
            return
        except Exception as err:
            tally.record(item, base_entry(item), ParseError(
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
