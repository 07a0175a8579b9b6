"""The terminal shows only what the user asked for (issue 24 item 5): no library's log line reaches stdout or
stderr of any `ragtrail` command unless `--verbose` asks for it. The real command, as a subprocess."""

from __future__ import annotations

import re

import pytest
from conftest import run_cli, write_corpus

# Our own lines: "ragtrail …" messages, and the stage lines of `ingest` ("09:16:14 plan: started").
OURS = re.compile(r"^(ragtrail[ :]|\d\d:\d\d:\d\d (preflight|split|ingest(\[\d+\])?|plan|chunk(\[\d+\])?|dedupe|embed(\[\d+\])?|"
                  r"write(\[\d+\])?|index|evaluate): )")


def foreign(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not OURS.match(line)]


@pytest.mark.parametrize("args", [
    ("search", "--product", "handbook", "how do I rerun a failed task?"),
    ("versions", "--product", "handbook"),
    ("runs", "--product", "handbook"),
    ("latest", "--product", "handbook"),
    ("trend", "--product", "handbook"),
    ("summary",),
    ("reconcile", "--dry-run"),
], ids=lambda a: a[0])
def test_commands_print_no_library_log_line(handbook_run, args):
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # e.g. MLflow's "INFO … Flushing the async trace logging queue"
    assert not re.search(r"\b(INFO|WARNING|DEBUG)\b", proc.stdout), proc.stdout


def test_a_fresh_store_says_only_the_commands_own_words(tmp_path):
    """A fresh MLflow store: before, MLflow printed "INFO … Creating initial MLflow database tables…"."""
    proc = run_cli("runs", "--product", "nothing", env={"RAGTRAIL_HOME": str(tmp_path / "home")})
    assert proc.returncode == 1
    assert proc.stderr.startswith("ragtrail runs: product 'nothing' has no runs yet") and not foreign(proc.stderr)


def test_ingest_stderr_holds_only_stage_lines_and_verbose_shows_the_libraries(tmp_path, handbook_run):
    corpus = write_corpus(tmp_path / "c", {"a.md": "# Aliases\n\nQdrant aliases switch collections atomically."})
    proc = run_cli("ingest", "--source", str(corpus), "--product", "quietlib")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not foreign(proc.stderr), foreign(proc.stderr)
    verbose = run_cli("search", "--verbose", "--product", "handbook", "retries")
    assert verbose.returncode == 0 and "Flushing the async trace logging queue" in verbose.stderr
