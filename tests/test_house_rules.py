"""House rules the linter cannot check: every module of the package, the Airflow edge and the DAGs
stays at most 300 lines (docs/architecture.md). Complexity (C901 ≤ 10) and the import boundaries are
ruff's (pyproject.toml and the nested ruff.toml files)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 300


def test_every_module_is_at_most_300_lines():
    modules = [p for folder in ("include", "plugins", "dags") for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(modules) > 40  # the walk found the package, not an empty folder
    too_long = {str(p.relative_to(REPO)): n for p in modules if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"
