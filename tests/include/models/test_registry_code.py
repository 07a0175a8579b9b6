"""The code a registered retriever ships: the ragtrail package's Python sources, nothing else."""

from __future__ import annotations

from pathlib import Path

import ragtrail
from ragtrail.models import registration as registry


def test_the_model_code_copy_leaves_caches_and_lint_files_behind(tmp_path, monkeypatch):
    """A working tree holds a linter's cache (``.ruff_cache/``, found in a registered model's artifacts),
    ``__pycache__`` and lint config beside the sources: only the ``.py`` files of the package travel."""
    pkg = tmp_path / "src" / "ragtrail"
    files = {"__init__.py": "", "search.py": "x = 1\n", "ruff.toml": "", "store/__init__.py": "",
             "store/qdrant.py": "", "store/ruff.toml": "", ".ruff_cache/0.9/123": "cache",
             ".ruff_cache/CACHEDIR.TAG": "", "__pycache__/search.cpython-311.pyc": "",
             "store/__pycache__/qdrant.cpython-311.pyc": "", ".DS_Store": ""}
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    monkeypatch.setattr(ragtrail, "__file__", str(pkg / "__init__.py"))
    copied = Path(registry._code_copy(tmp_path / "out"))
    assert copied == tmp_path / "out" / "code" / "ragtrail"
    shipped = sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file())
    assert shipped == ["__init__.py", "search.py", "store/__init__.py", "store/qdrant.py"]
