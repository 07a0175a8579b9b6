"""Several sandboxed parser processes at once, their outcomes still in the order of the files.

One child (:class:`~ragtrail.sources.sandbox.SandboxedParser`) parses one file at a time, so a folder of
HTML pages kept one CPU busy however many the task had. :class:`ParserPool` runs ``workers`` children,
each with its own time and memory budget, and hands the caller ``(job, outcomes)`` in the jobs' order
(:func:`~ragtrail.sources.sandbox.parse_in_order`): what the ingest stage writes — docs, manifest,
quarantine — is the same, row for row, whatever the number of children. A child that overruns, runs out
of memory or dies is replaced on its own; the others go on. With one worker it is the single child of
before.

The default width is the CPUs this process may really use (:func:`ragtrail.core.cpus.usable_cpus`);
``RAGTRAIL_PARSE_WORKERS`` sets it. Each child holds its parsers (lxml, pdfium, python-docx…) once
loaded, so memory grows with the width: see docs/performance.md for the measured peak.

Example::

    with ParserPool(workers=4) as pool:
        for job, outcomes in pool.parse_stream(jobs):
            for doc in outcomes:
                ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ragtrail.core import env_kit
from ragtrail.core.cpus import usable_cpus
from ragtrail.sources.sandbox import (
    AHEAD,
    DEFAULT_MAX_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    ParseJob,
    SandboxedParser,
    parse_in_order,
)


def default_workers(env: dict | None = None) -> int:
    """How many parser children to run: ``RAGTRAIL_PARSE_WORKERS``, else the usable CPUs."""
    return env_kit.PARSE_WORKERS.get(env) or usable_cpus()


class ParserPool:
    """``workers`` sandboxed parser processes; use as a context manager so every child is reaped.

    Args:
        workers: children at most (``None``: :func:`default_workers`); each starts with its first file.
        timeout_s, max_memory_mb, on_wait: each child's budgets, as :class:`SandboxedParser` takes them.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_memory_mb: int = DEFAULT_MAX_MEMORY_MB, on_wait: Callable[[str, float], None] | None = None):
        self.parsers = [SandboxedParser(timeout_s, max_memory_mb, on_wait) for _ in range(workers or default_workers())]

    def __enter__(self) -> ParserPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every child."""
        for parser in self.parsers:
            parser.close()

    def parse_stream(self, jobs: Iterable[ParseJob], ahead: int = AHEAD) -> Iterator[tuple[ParseJob, Iterator]]:
        """``(job, its outcomes)`` for every job, in order; see :meth:`SandboxedParser.parse_stream`."""
        return parse_in_order(self.parsers, jobs, ahead)
