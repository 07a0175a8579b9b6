"""Parsers that may meet hostile files run in a child process with a timeout and a memory limit.

A hostile PDF or Office file (a decompression bomb, a pathological content stream, a huge embedded
image) can make any parser run for minutes or eat gigabytes. So those parsers never run in the
worker's own process: a small child (``python -m ragtrail.sandbox``) caps its own address space with
``RLIMIT_AS`` before importing anything heavy, then answers one JSON line per file. The parent waits
at most ``timeout_s`` per file; a child that overruns is killed (by its own PID) and the next file gets
a fresh one. Whatever happens, the caller gets text or a :class:`~ragtrail.parsing.ParseError`: the
handler's own reasons (:mod:`ragtrail.pdf`, :mod:`ragtrail.office`) or ``parse_timeout``,
``parse_memory_limit``, ``parse_crashed``.

Example::

    with SandboxedParser(timeout_s=30) as parser:
        text = parser.parse(Path("report.docx"), "docx").text
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

from ragtrail.parsed import Parsed, ParseError, normalize_whitespace

DEFAULT_TIMEOUT_S = float(os.environ.get("RAGTRAIL_PDF_TIMEOUT_S", "120"))
DEFAULT_MAX_MEMORY_MB = int(os.environ.get("RAGTRAIL_PDF_MAX_MEMORY_MB", "2048"))
_START_TIMEOUT_S = 60.0
# kind -> "module:function" run in the child; each takes a path and returns {"text", "parser"} or
# {"reason", "message"}.
HANDLERS = {"pdf": "ragtrail.pdf:extract_in_child", "docx": "ragtrail.office:docx_in_child",
            "pptx": "ragtrail.office:pptx_in_child"}


class SandboxedParser:
    """A reusable sandboxed parser process; use as a context manager so the child is always reaped.

    Args:
        timeout_s: wall-clock seconds one file may take.
        max_memory_mb: address-space limit of the child process.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_memory_mb: int = DEFAULT_MAX_MEMORY_MB):
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self._proc: subprocess.Popen | None = None
        self._buf = b""

    def __enter__(self) -> SandboxedParser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child: close its input, give it a moment, then kill it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        finally:
            proc.stdout.close()

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        return code

    def _start(self) -> subprocess.Popen:
        # The child sets its own limits first thing (no preexec_fn: unsafe with threads in the parent).
        self._buf = b""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ragtrail.sandbox", str(self.max_memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
        )
        try:
            ready = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        except EOFError:
            ready = None
        if ready is None or json.loads(ready).get("ready") is not True:
            code = self._kill()
            raise ParseError("parse_crashed", f"the parser process did not start (exit code {code}): "
                                              f"is {self.max_memory_mb} MB enough to import pypdf?")
        return self._proc

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the child, ``None`` when the deadline passes; ``EOFError`` when the child is gone.

        EOF is told apart here, not by polling the child: its pipe closes before it can be reaped.
        """
        proc = self._proc
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def parse(self, path: Path, kind: str) -> Parsed:
        """Text of one file of ``kind`` (a key of :data:`HANDLERS`), or :class:`ParseError`."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        try:
            proc.stdin.write(json.dumps({"path": str(path), "kind": kind}).encode() + b"\n")
        except OSError:
            code = self._kill()
            raise ParseError("parse_crashed", f"the parser process died (exit code {code})") from None
        try:
            line = self._read_line(time.monotonic() + self.timeout_s)
        except EOFError:
            code = self._kill()
            raise ParseError("parse_crashed", f"the parser process died on this file (exit code {code})") from None
        if line is None:
            self._kill()
            raise ParseError("parse_timeout", f"parsing took longer than {self.timeout_s:g} s")
        reply = json.loads(line)
        if reply.get("reason"):
            if reply.get("restart"):
                self._kill()
            raise ParseError(reply["reason"], reply["message"])
        text = normalize_whitespace(reply["text"])
        if not text:
            raise ParseError("no_text_layer" if kind == "pdf" else "empty", f"no text in the {kind} file")
        return Parsed(text=text, doc_type=kind, parser=reply.get("parser", kind))


# ---- the child process ---------------------------------------------------------------------------


def _serve(max_memory_mb: int) -> None:
    import importlib
    import logging
    import resource

    limit = max_memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    import pypdf  # noqa: F401  (import before saying ready, under the limit; Office libraries on first use)

    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            module, func = HANDLERS[request.get("kind", "pdf")].split(":")
            reply = getattr(importlib.import_module(module), func)(request["path"])
        except MemoryError:
            reply = {"reason": "parse_memory_limit", "restart": True,
                     "message": f"parsing needed more than {max_memory_mb} MB"}
        except RecursionError:
            reply = {"reason": "too_complex", "restart": True, "message": "the file nests objects too deeply"}
        except OSError as err:
            reply = {"reason": "unreadable", "message": str(err)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if reply.get("restart"):
            return  # a process that hit its memory limit is not trusted with another file


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
