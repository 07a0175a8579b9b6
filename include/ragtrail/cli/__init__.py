"""The shell: ``ragtrail …`` commands and the local UI. It may import anything; nothing imports it.

``ragtrail.cli:main`` stays the console script's entry point (:mod:`ragtrail.cli.main`).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``ragtrail`` with ``argv`` (default: the process's arguments)."""
    from ragtrail.cli.main import main as run

    return run(argv)
