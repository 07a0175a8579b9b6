"""Write the settings tables of docs/configuration.md from the table of settings.

``python -m ragtrail.core.envdoc`` (``make docs``) rewrites what lies between the page's two marker
comments; ``--check`` only says whether the page is current (exit 1 when stale). The prose around the
markers is the page's own.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ragtrail.core import env, env_kit
from ragtrail.core.envvar import Var

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
BEGIN = "<!-- settings: generated from ragtrail/core/env.py and env_kit.py by `make docs`; edit those -->"
END = "<!-- end of settings -->"
TABLES = (("The tracking provider's settings (`ragtrail.core.env`)", env.ALL),
          ("The RAG kit's settings (`ragtrail.core.env_kit`)", env_kit.ALL))


def declared() -> dict[str, Var]:
    """Every declared variable by name, old names included."""
    return {name: var for _, table in TABLES for var in table for name in (var.name, *var.aliases)}


def _default(var: Var) -> str:
    if var.default_doc is not None:
        return var.default_doc
    if var.secret or var.default is None:
        return "–"
    if var.type is bool:
        return "on" if var.default else "off"
    return f"`{var.default:g}`" if isinstance(var.default, float) else f"`{var.default}`"


def _row(var: Var) -> str:
    name = f"`{var.name}`"
    if var.option:
        name += f" (or `[ragtrail] {var.option}`)"
    meaning = var.meaning + (f"; {var.note}" if var.note else "")
    if var.type in (bool, int, float) or var.choices:
        meaning += f" — {var.accepts()}"
    if var.aliases:
        meaning += "; the old name " + ", ".join(f"`{a}`" for a in var.aliases) + " is read when this is unset"
    if var.secret:
        meaning += " (secret)"
    return f"| {name} | {_default(var)} | {meaning} |"


def render() -> str:
    """The generated part of the page, markers included."""
    parts = [BEGIN]
    for title, table in TABLES:
        parts += ["", f"### {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        parts += [_row(var) for var in table]
    return "\n".join([*parts, "", END])


def updated(page: str) -> str:
    """``page`` with its generated part replaced by :func:`render`."""
    head, found, rest = page.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise SystemExit(f"{PAGE}: the markers {BEGIN!r} … {END!r} are missing")
    return head + render() + tail


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    text = PAGE.read_text()
    new = updated(text)
    if check:
        if new != text:
            print(f"{PAGE} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
