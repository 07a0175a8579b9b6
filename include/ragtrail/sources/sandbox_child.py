"""The sandboxed parser's child process: ``python -m ragtrail.sources.sandbox_child <max memory MB>``.

It caps its own address space (``RLIMIT_AS``) first thing, says ``{"ready": true}``, then answers one
request line (``{"path", "name", "table"}``) after another, in order: one JSON line per document
(``{"doc": …}`` or ``{"error": …}``) and an end line (``{"end": true}``, with ``"restart": true`` when
it must not be trusted with another file). See :mod:`ragtrail.sources.sandbox` for the parent's side.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ragtrail.sources.parsed import Parsed, ParseError, memory_limit


def _serve(max_memory_mb: int) -> None:
    import logging
    import resource

    limit = max_memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")  # a lone surrogate becomes "?"
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    # Parsers import on first use (lxml, pypdfium2, python-docx…): a text-only folder never pays for them.
    from ragtrail.sources.parsing import parse_local

    # The high-water mark this process starts with: exec keeps the one of the parent's forked copy (see sandbox_proc).
    out.write(json.dumps({"ready": True, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        end = _answer(request, parse_local, out, max_memory_mb)
        out.write(json.dumps(end) + "\n")
        out.flush()
        if end.get("restart"):
            return


def _answer(request: dict, parse_local, out, max_memory_mb: int) -> dict:
    """Write one line per document of the requested file; return the end line."""
    from ragtrail.sources.tables import TableSpec

    spec = request.get("table")
    if spec is not None and spec.get("metadata_columns") is not None:
        spec["metadata_columns"] = tuple(spec["metadata_columns"])
    try:
        for doc in parse_local(request["name"], Path(request["path"]), TableSpec(**spec) if spec else None):
            out.write(_line(doc) + "\n")
        return {"end": True}
    except MemoryError:
        error = memory_limit(max_memory_mb)
        return {"end": True, "restart": True, "error": {"reason": error.reason, "message": error.message}}
    except RecursionError:
        return {"end": True, "restart": True,
                "error": {"reason": "too_complex", "message": "the file nests objects too deeply"}}
    except OSError as err:
        return {"end": True, "error": {"reason": "unreadable", "message": str(err)}}
    except Exception as err:  # an input no parser foresaw costs this file, never the run
        return {"end": True, "restart": True,
                "error": {"reason": "parse_crashed", "message": f"{type(err).__name__}: {err}"[:500]}}


def _line(doc: Parsed | ParseError) -> str:
    if isinstance(doc, ParseError):
        return json.dumps({"error": {"reason": doc.reason, "message": doc.message, "key": doc.key}},
                          ensure_ascii=False)
    fields = {"text": doc.text, "doc_type": doc.doc_type, "parser": doc.parser, "key": doc.key,
              "metadata": doc.metadata, "encoding": doc.encoding}
    return json.dumps({"doc": fields}, ensure_ascii=False, default=str)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
