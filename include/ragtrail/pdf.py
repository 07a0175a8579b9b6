"""PDF text through pypdf, in a child process with a timeout and a memory limit.

A hostile PDF (a decompression bomb, a pathological content stream) can make any parser run for
minutes or eat gigabytes. So pypdf never runs in the worker's own process: a small child
(``python -m ragtrail.pdf``) caps its own address space with ``RLIMIT_AS`` before importing pypdf,
then answers one JSON line per file. The parent waits at most ``timeout_s`` per file; a child that
overruns is killed (by its own PID) and the next PDF gets a fresh one. Whatever happens, the caller
gets text or a :class:`~ragtrail.parsing.ParseError` with one of these reasons:

``corrupt_pdf`` (unreadable structure), ``encrypted_pdf`` (needs a password), ``no_text_layer``
(pages but no text: a scan; OCR is not done), ``too_complex`` (pypdf's own bomb limits tripped),
``parse_timeout``, ``parse_memory_limit`` and ``parse_crashed``.

Example::

    with PdfExtractor(timeout_s=30) as pdf:
        text = pdf.extract(Path("report.pdf")).text
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

from ragtrail.parsing import Parsed, ParseError, normalize_whitespace

DEFAULT_TIMEOUT_S = float(os.environ.get("RAGTRAIL_PDF_TIMEOUT_S", "120"))
DEFAULT_MAX_MEMORY_MB = int(os.environ.get("RAGTRAIL_PDF_MAX_MEMORY_MB", "2048"))
_START_TIMEOUT_S = 60.0


class PdfExtractor:
    """A reusable sandboxed pypdf worker; use as a context manager so the child is always reaped.

    Args:
        timeout_s: wall-clock seconds one file may take.
        max_memory_mb: address-space limit of the child process.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_memory_mb: int = DEFAULT_MAX_MEMORY_MB):
        self.timeout_s = timeout_s
        self.max_memory_mb = max_memory_mb
        self._proc: subprocess.Popen | None = None
        self._buf = b""

    def __enter__(self) -> PdfExtractor:
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
            [sys.executable, "-m", "ragtrail.pdf", str(self.max_memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
        )
        try:
            ready = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        except EOFError:
            ready = None
        if ready is None or json.loads(ready).get("ready") is not True:
            code = self._kill()
            raise ParseError("parse_crashed", f"the PDF worker did not start (exit code {code}): "
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

    def extract(self, path: Path) -> Parsed:
        """Text of one PDF file, or :class:`ParseError`."""
        proc = self._proc if self._proc is not None and self._proc.poll() is None else self._start()
        try:
            proc.stdin.write(json.dumps({"path": str(path)}).encode() + b"\n")
        except OSError:
            code = self._kill()
            raise ParseError("parse_crashed", f"the PDF worker died (exit code {code})") from None
        try:
            line = self._read_line(time.monotonic() + self.timeout_s)
        except EOFError:
            code = self._kill()
            raise ParseError("parse_crashed", f"the PDF worker died on this file (exit code {code})") from None
        if line is None:
            self._kill()
            raise ParseError("parse_timeout", f"PDF parsing took longer than {self.timeout_s:g} s")
        reply = json.loads(line)
        if reply.get("reason"):
            if reply.get("restart"):
                self._kill()
            raise ParseError(reply["reason"], reply["message"])
        text = normalize_whitespace(reply["text"])
        if not text:
            raise ParseError("no_text_layer", "the PDF has no extractable text")
        return Parsed(text=text, doc_type="pdf", parser="pypdf")


# ---- the child process ---------------------------------------------------------------------------


def _extract_in_child(path: str) -> dict:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" not in head:
        return {"reason": "corrupt_pdf", "message": "no %PDF- header: not a PDF file"}
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # an empty user password: encrypted only against editing
            except (DependencyError, NotImplementedError) as err:
                return {"reason": "encrypted_pdf", "message": f"encrypted with an unsupported scheme: {err}"}
            if not opened:
                return {"reason": "encrypted_pdf", "message": "the PDF is encrypted and needs a password"}
        n_pages = len(reader.pages)
    except LimitReachedError as err:
        return {"reason": "too_complex", "message": f"pypdf refused the file: {err}"}
    except FileNotDecryptedError as err:
        return {"reason": "encrypted_pdf", "message": str(err)}
    except MemoryError:
        raise
    except Exception as err:
        return {"reason": "corrupt_pdf", "message": f"{type(err).__name__}: {err}"[:500]}
    if n_pages == 0:
        return {"reason": "corrupt_pdf", "message": "the PDF has no pages"}
    texts, failures, last_error = [], 0, ""
    for page in reader.pages:
        try:
            texts.append((page.extract_text() or "").strip())
        except LimitReachedError as err:
            return {"reason": "too_complex", "message": f"pypdf refused a page: {err}"}
        except MemoryError:
            raise
        except Exception as err:
            failures += 1
            last_error = f"{type(err).__name__}: {err}"[:300]
    if failures == n_pages:
        return {"reason": "corrupt_pdf", "message": f"none of {n_pages} pages could be read ({last_error})"}
    text = "\n\n".join(t for t in texts if t)
    if not text:
        return {"reason": "no_text_layer", "message": f"{n_pages} page(s) without a text layer (a scan? OCR is not done)"}
    # Lone surrogates from broken font maps cannot be stored as UTF-8.
    return {"text": text.encode("utf-8", "replace").decode("utf-8"), "pages": n_pages}


def _serve(max_memory_mb: int) -> None:
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
    import pypdf  # noqa: F401  (import before saying ready, under the limit)

    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        path = json.loads(line)["path"]
        try:
            reply = _extract_in_child(path)
        except MemoryError:
            reply = {"reason": "parse_memory_limit", "restart": True,
                     "message": f"PDF parsing needed more than {max_memory_mb} MB"}
        except RecursionError:
            reply = {"reason": "too_complex", "restart": True, "message": "the PDF nests objects too deeply"}
        except OSError as err:
            reply = {"reason": "unreadable", "message": str(err)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if reply.get("restart"):
            return  # a process that hit its memory limit is not trusted with another file


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
