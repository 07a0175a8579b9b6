"""Every parser runs in a child process with a time and a memory budget per file.

A hostile file — an HTML page nested 100,000 deep, a decompression bomb, a pathological PDF content stream, a CSV
with a million columns — can make any parser run for minutes or eat gigabytes. So no parser runs in the worker's
own process: a small child (``python -m ragtrail.sources.sandbox``) caps its own address space with ``RLIMIT_AS``
before importing anything heavy, then parses one file per request (:func:`ragtrail.sources.parsing.parse_local`,
in :mod:`ragtrail.sources.sandbox_child`) and streams back one JSON line per document (a table gives one per row)
and an end line. The parent waits at most ``timeout_s`` per file; a child that overruns is killed (by its own
PID) and the next file gets a fresh one. Whatever happens, the caller gets documents or
:class:`~ragtrail.sources.parsed.ParseError` s: the parsers' own reasons or ``parse_timeout``,
``parse_memory_limit``, ``parse_crashed``. The rows of a table read before its budget ran out are kept.

A child starts with its first file (its hello is read with its first answer, so children boot side by side) and
stays up between files; :meth:`SandboxedParser.parse_stream` keeps a few requests queued in it: the child parses
the next files while the caller hashes and stores the last one (docs/formats.md: the measured overhead);
:func:`parse_in_order` does the same over several children (:mod:`ragtrail.sources.parser_pool`), the outcomes
still in the files' order. A file's time budget runs from when the caller starts reading it. While a file takes
long, ``on_wait(name, seconds)`` is called about once a second (progress lines name it).
Budgets: ``RAGTRAIL_PARSE_TIMEOUT_S`` (120) and ``RAGTRAIL_PARSE_MAX_MEMORY_MB`` (2048; the older
``RAGTRAIL_PDF_TIMEOUT_S`` / ``RAGTRAIL_PDF_MAX_MEMORY_MB`` are read when the new ones are unset).

Example::

    with SandboxedParser(timeout_s=30) as parser:
        for doc in parser.parse_all("report.docx", Path("report.docx")):
            print(doc.text if isinstance(doc, Parsed) else doc.reason)
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtrail.core import env_kit
from ragtrail.sources.parsed import Parsed, ParseError
from ragtrail.sources.sandbox_proc import alive, died, reap

if TYPE_CHECKING:
    from ragtrail.sources.tables import TableSpec


DEFAULT_TIMEOUT_S = env_kit.PARSE_TIMEOUT_S.get()
DEFAULT_MAX_MEMORY_MB = env_kit.PARSE_MAX_MEMORY_MB.get()
_START_TIMEOUT_S = 60.0
_WAIT_TICK_S = 1.0  # how often on_wait hears about a file that takes long
AHEAD = 8  # requests queued in the child at most: enough to hide the hand-over between two processes


@dataclass
class ParseJob:
    """One file for :meth:`SandboxedParser.parse_stream`; ``path=None`` passes through unparsed (in order)."""

    name: str
    path: Path | None
    table: TableSpec | None = None
    context: Any = None  # the caller's, handed back with the outcomes
    sent_to: int = field(default=-1, repr=False)  # which child (generation) holds the request


class SandboxedParser:
    """A reusable sandboxed parser process; use as a context manager so the child is always reaped.

    Args:
        timeout_s: wall-clock seconds one file may take (a table: all its rows).
        max_memory_mb: address-space limit of the child process.
        on_wait: called with ``(name, seconds so far)`` about once a second while a file is being parsed.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_memory_mb: int = DEFAULT_MAX_MEMORY_MB,
                 on_wait: Callable[[str, float], None] | None = None):
        self.timeout_s, self.max_memory_mb, self.on_wait = timeout_s, max_memory_mb, on_wait
        self._proc: subprocess.Popen | None = None
        self._generation = 0  # bumped each time a child starts
        self._peak_mb = self._start_mb = 0.0  # the last child's peak RSS when reaped; the one it started with
        self._chunks: list[bytes] = []
        self._booting = False  # a child started whose hello is not read yet

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
        code, peak_mb = reap(proc)
        self._peak_mb = peak_mb if peak_mb > self._start_mb else 0.0  # only a peak the child itself reached
        proc.stdout.close()
        proc.stdin.close()
        return code

    def _start(self) -> subprocess.Popen:
        # The child sets its own limits first thing (no preexec_fn: unsafe with threads in the parent). Its hello
        # is read with its first answer (_ready): a pool's children boot side by side while the listing goes on.
        self._chunks, self._booting = [], True
        self._generation += 1
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ragtrail.sources.sandbox_child", str(self.max_memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, close_fds=True,
        )
        return self._proc

    def _ready(self) -> None:
        """Read the child's hello (the first line it writes); ParseError when it did not start."""
        self._booting = False
        try:
            ready = self._read_line(time.monotonic() + _START_TIMEOUT_S)
        except EOFError:
            ready = None
        hello = json.loads(ready) if ready is not None else {}
        self._start_mb = hello.get("maxrss_kb", 0) / 1024
        if hello.get("ready") is not True:
            code = self._kill()
            raise ParseError("parse_crashed", f"the parser process did not start (exit code {code}): "
                                              f"is {self.max_memory_mb} MB enough to start Python?")

    def _read_line(self, deadline: float, name: str = "", started: float = 0.0) -> bytes | None:
        """One line from the child, ``None`` when the deadline passes; ``EOFError`` when the child is gone (told
        apart here, not by polling: its pipe closes before it can be reaped). Linear in a 100 MB line."""
        if self._chunks and b"\n" in self._chunks[0]:
            return self._take_line()
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not sel.select(min(left, _WAIT_TICK_S)):
                    if self.on_wait is not None and name:
                        self.on_wait(name, time.monotonic() - started)
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise EOFError
                self._chunks.append(chunk)
                if b"\n" in chunk:
                    return self._take_line()

    def _take_line(self) -> bytes:
        data = b"".join(self._chunks)
        line, _, rest = data.partition(b"\n")
        self._chunks = [rest] if rest else []
        return line

    def _send(self, job: ParseJob) -> None:
        """Queue ``job`` in the running child (started if need be); ParseError when it cannot start."""
        proc = self._proc if self._proc is not None and alive(self._proc) else self._start()
        request = {"path": str(job.path), "name": job.name,
                   "table": asdict(job.table) if job.table is not None else None}
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
        except OSError:
            raise ParseError("parse_crashed", f"the parser process died (exit code {self._kill()})") from None
        job.sent_to = self._generation

    def parse_stream(self, jobs: Iterable[ParseJob], ahead: int = AHEAD) -> Iterator[tuple[ParseJob, Iterator]]:
        """``(job, its outcomes)`` for every job, in order, with up to ``ahead`` files queued in the child.

        Each job's outcomes (:class:`Parsed` or :class:`ParseError`, never raised) are read as the caller iterates
        them; whatever the caller leaves unread is skipped before the next job. A file over its budget, or one
        that kills the child, ends its outcomes with a :class:`ParseError`; the files queued behind it go to a
        fresh child."""
        return parse_in_order([self], jobs, ahead)

    def _submit(self, job: ParseJob, queue: deque) -> None:
        """Queue ``job`` behind ``queue`` (this child's unread jobs): sent now if the running child holds them
        all, or to a fresh child when there are none (so every child of a pool starts with its first file)."""
        if not queue or self._holds(queue):
            try:
                self._send(job)
            except ParseError:
                pass  # the child died: the job is sent again, to a fresh one, when its turn comes
        queue.append(job)

    def _holds(self, queue: deque) -> bool:
        """Whether the running child holds every queued request (so a new one can follow them in order)."""
        return (self._proc is not None and alive(self._proc)
                and all(q.sent_to == self._generation for q in queue))

    def _outcomes(self, job: ParseJob, queued: deque) -> Iterator[Parsed | ParseError]:
        finished = False
        try:
            if job.sent_to != self._generation or self._proc is None:
                for later in (job, *queued):  # the child that held them is gone: queue them again, in order
                    if later.path is not None:
                        self._send(later)
            # The budget runs from when the caller starts reading the file: in a pool the caller reads its
            # children in turn, so an answer may wait in the pipe; a file never gets less than its budget.
            started = time.monotonic()
            for reply in self._replies(job.name, started + self.timeout_s, started):
                if reply is None:
                    finished = True
                    return
                yield reply
        except ParseError as err:
            finished = True
            yield err
        finally:
            if not finished:  # the caller stopped early: the child's state is unknown
                self._kill()

    def _replies(self, name: str, deadline: float, started: float) -> Iterator[Parsed | ParseError | None]:
        """The child's answers for one file, then ``None``; raises ParseError on timeout or crash."""
        if self._booting:
            self._ready()
        while True:
            try:
                line = self._read_line(deadline, name, started)
            except EOFError:
                raise died(self._kill(), self._peak_mb, self.max_memory_mb) from None
            if line is None:
                self._kill()
                raise ParseError("parse_timeout", f"parsing took longer than {self.timeout_s:g} s "
                                                  "(RAGTRAIL_PARSE_TIMEOUT_S)")
            reply = json.loads(line)
            if "doc" in reply:
                yield Parsed(**reply["doc"])
            elif "error" in reply:
                yield ParseError(**reply["error"])
            if reply.get("end"):
                if reply.get("restart"):
                    self._kill()  # a process that hit its memory limit is not trusted with another file
                yield None
                return

    def parse_all(self, name: str, path: Path, table: TableSpec | None = None) -> Iterator[Parsed | ParseError]:
        """Every document of one file (``name`` picks the parser), each :class:`Parsed` or :class:`ParseError`.

        Never raises: a file over its time or memory budget, or one that kills the parser, ends in a
        :class:`ParseError` after whatever documents (table rows) it gave before.
        """
        for _, outcomes in self.parse_stream([ParseJob(name, path, table)]):
            yield from outcomes

    def parse(self, path: Path, kind: str) -> Parsed:
        """The text of one single-document file (PDF, Office, text, HTML), or raise :class:`ParseError`
        (``kind``: kept for callers of the PDF-only sandbox; the file's name picks the parser)."""
        outcomes = list(self.parse_all(path.name, path))
        first = outcomes[0] if outcomes else ParseError("empty", f"no text in the {kind} file")
        if isinstance(first, ParseError):
            raise first
        return first


def parse_in_order(parsers: Sequence[SandboxedParser], jobs: Iterable[ParseJob],
                   ahead: int = AHEAD) -> Iterator[tuple[ParseJob, Iterator]]:
    """:meth:`SandboxedParser.parse_stream` over several children: ``(job, its outcomes)`` in the jobs' order.

    Each file goes to the child with the fewest unread files (``ahead`` at most), so every child parses its
    next files while the caller reads the current one, in the order of ``jobs``. A child that dies or
    overruns is replaced on its own: only the files queued in it go again, to its fresh child.
    """
    source, order = iter(jobs), deque()
    queues: list[deque] = [deque() for _ in parsers]
    while True:
        while len(order) < ahead * len(parsers) and (job := next(source, None)) is not None:
            if job.path is None:
                order.append((job, None))
                continue
            least = min(range(len(parsers)), key=lambda i: len(queues[i]))
            parsers[least]._submit(job, queues[least])
            order.append((job, least))
        if not order:
            return
        job, at = order.popleft()
        if at is None:
            outcomes = iter(())
        else:
            queues[at].popleft()
            outcomes = parsers[at]._outcomes(job, queues[at])
        yield job, outcomes
        for _ in outcomes:  # what the caller did not read
            pass
