"""What the ``ragtrail`` commands share on the terminal: tables, a clean stdout for ``--json``, the run summary."""

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


def _quality(summary: dict) -> str:
    """One line on the evaluation and the gate's verdict."""
    ev = summary.get("eval") or {}
    score = (f"nDCG@10 {ev['ndcg_at_10']:.3f}, recall@10 {ev['recall_at_10']:.3f}, "
             f"p95 {ev['latency_p95_ms']:.0f} ms; " if ev else "")
    live = "live" if summary.get("promoted") else "not live"
    if summary.get("promoted_worse"):
        live = "live although WORSE than the version it replaced"
    return f"{score}{live} ({summary.get('gate') or '-'}: {summary.get('gate_reason') or '-'})"


def print_summary(summary: dict, out) -> None:
    """What ``ragtrail ingest`` prints: the run's roll-up, its problems and where its trail is."""
    from ragtrail.core import settings

    s = settings.load()
    lines = [
        f"status      {summary.get('status')}",
        f"product     {summary.get('product')} (version {summary.get('version')})",
        f"documents   {summary.get('docs', 0)} indexed, {summary.get('docs_failed', 0)} quarantined",
        f"chunks      {summary.get('chunks', 0)}",
        f"vectors     {summary.get('vectors', 0)} in collection {summary.get('collection')}",
        f"quality     {_quality(summary)}",
        f"wall time   {summary.get('duration_s')} s",
        f"parent run  {summary.get('parent_run_id') or '- (tracking off)'}",
    ]
    trail = summary.get("trail") or {}
    if trail.get("complete") is False:
        gaps = ", ".join(trail.get("missing_runs") or []) or "-"
        lines.append(f"trail       INCOMPLETE: no MLflow run for {gaps}; closed late: "
                     f"{', '.join(trail.get('closed_runs') or []) or '-'}; {trail.get('error') or ''}".rstrip("; "))
    for reason in summary.get("reasons") or []:
        lines.append(f"problem     {reason}")
    if summary.get("parent_run_id"):
        lines += ["", "Open the trail in the MLflow UI:", f"  {s.mlflow_server_command}",
                  f"  then {summary.get('mlflow_url')}"]
    print("\n".join(lines), file=out)
