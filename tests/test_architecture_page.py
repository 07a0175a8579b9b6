"""docs/architecture.md's table of boundaries is the linter's: one row per ``ruff.toml``, the same bans."""

from __future__ import annotations

import re
import tomllib

from conftest import REPO


def _rows() -> dict[str, set[str]]:
    page = (REPO / "docs" / "architecture.md").read_text()
    section = page.split("## Boundaries the linter enforces", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        folder = re.findall(r"`([^`]+)`", cells[0])[0].rstrip("/")
        names = {n for n in re.findall(r"`([^`]+)`", cells[1]) if not re.search(r"\.py$|\s|\(", n)}
        rows[folder] = {"ragtrail" + n if n.startswith(".") else n for n in names}
    return rows


def test_the_boundary_table_names_every_ruff_toml_and_its_bans():
    rows = _rows()
    tomls = {str(p.parent.relative_to(REPO)): p for p in REPO.glob("[ip]*/**/ruff.toml")}
    assert set(rows) == set(tomls)
    for folder, path in tomls.items():
        banned = set(tomllib.loads(path.read_text())["lint"]["flake8-tidy-imports"]["banned-api"])
        assert rows[folder] == banned, folder
