"""Stage 1 — ingest: read every document of a source into ``docs.parquet``, quarantine the rest.

Bad input never takes good input down with it: a file that cannot be read gets a manifest row with
status ``quarantined`` and a reason, a per-reason metric, and the run goes on. Only a source with no
usable document at all fails the stage.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from ragtrail.parsing import ParseError, parse_bytes
from ragtrail.recorder import Recorder
from ragtrail.sources import iter_source

DOCS_FILE = "docs.parquet"
MANIFEST_FILE = "manifest.jsonl"
QUARANTINE_FILE = "quarantine.json"
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
) -> dict:
    """Read all documents of ``source`` into ``workdir/docs.parquet``.

    Args:
        source: a local folder or ``file://`` URI.
        workdir: the run's work folder; created if missing.
        recorder: receives metrics, the manifest and the quarantine list.
        max_doc_bytes: files larger than this are quarantined unread.

    Returns:
        ``{"docs_path", "docs", "quarantined"}`` — small enough for XCom.

    Raises:
        NoUsableDocuments: when not a single document could be parsed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    docs_path, manifest_path = workdir / DOCS_FILE, workdir / MANIFEST_FILE
    schema = _docs_schema()
    rec.param(source=source, max_doc_bytes=max_doc_bytes)

    seen = parsed = bytes_in = 0
    reasons: Counter[str] = Counter()
    quarantine: list[dict] = []
    digest = hashlib.sha256()
    rows: list[dict] = []
    with pq.ParquetWriter(docs_path, schema) as writer, manifest_path.open("w") as manifest:

        def flush() -> None:
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows.clear()

        for item in iter_source(source):
            seen += 1
            entry = {"uri": item.uri, "doc_id": item.doc_id, "bytes": item.size, "sha256": None,
                     "type": None, "parser": None, "status": "indexed", "reason": None}
            try:
                if item.skip_reason:
                    raise ParseError(item.skip_reason, f"not read: {item.skip_reason.replace('_', ' ')}")
                if item.size > max_doc_bytes:
                    raise ParseError("too_large", f"{item.size} bytes exceeds the limit of {max_doc_bytes}")
                data = item.read_bytes()
                bytes_in += len(data)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                doc = parse_bytes(item.doc_id, data)
            except ParseError as err:
                entry.update(status="quarantined", reason=err.reason, message=err.message)
                reasons[err.reason] += 1
                quarantine.append({k: entry[k] for k in ("doc_id", "uri", "reason", "message")})
            except OSError as err:  # unreadable file: permissions, vanished mid-run
                entry.update(status="quarantined", reason="unreadable", message=str(err))
                reasons["unreadable"] += 1
                quarantine.append({k: entry[k] for k in ("doc_id", "uri", "reason", "message")})
            else:
                parsed += 1
                entry.update(type=doc.doc_type, parser=doc.parser)
                rows.append({"doc_id": item.doc_id, "uri": item.uri, "text": doc.text,
                             "doc_type": doc.doc_type, "parser": doc.parser, "sha256": entry["sha256"],
                             "content_hash": content_hash(doc.text), "bytes": len(data)})
                if len(rows) >= _BATCH:
                    flush()
            digest.update(f"{entry['doc_id']}\0{entry['sha256']}\0{entry['status']}\n".encode())
            manifest.write(json.dumps(entry) + "\n")
        flush()

    failed = seen - parsed
    rec.metric(docs_seen=seen, docs_parsed=parsed, docs_failed=failed, bytes_in=bytes_in)
    rec.metric(**{f"quarantined_{reason}": n for reason, n in reasons.items()})
    rec.artifact(manifest_path, "ingest")
    if quarantine:
        (workdir / QUARANTINE_FILE).write_text(json.dumps(quarantine, indent=1))
        rec.artifact(workdir / QUARANTINE_FILE, "ingest")
    rec.dataset(name="source", source=source, digest=digest.hexdigest()[:16],
                profile={"docs_seen": seen, "docs_parsed": parsed})
    if parsed == 0:
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the source is empty"
        raise NoUsableDocuments(f"no usable documents in {source}: {seen} found ({why})")
    return {"docs_path": str(docs_path), "docs": parsed, "quarantined": failed}
