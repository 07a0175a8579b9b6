"""What the ``ragtrail`` commands share on the terminal: tables, and a clean stdout for ``--json``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def fmt(value: Any) -> str:
    """A cell: ``-`` for nothing, floats without noise (integers whole, others 3 significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) < 1e12 else f"{value:.3g}"
    return str(value)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """Aligned columns (``tabulate``): numbers right, text left; cells formatted by :func:`fmt`."""
    from tabulate import tabulate

    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
               for i in range(len(headers))]
    cells = [[fmt(c) for c in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="simple", disable_numparse=True,
                    colalign=["right" if n else "left" for n in numeric])


@contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send everything written to fd 1 (Airflow's and MLflow's logs too) to stderr; yield the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w")
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
