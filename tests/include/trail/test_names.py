"""One module of names, one way to go live (issue 26, items 4 and 5), held by scans of the source.

- Every ``ragtrail.*`` MLflow tag, span and attribute name is a constant in :mod:`ragtrail.trail.names`
  (the stages' own in :mod:`ragtrail.core.stage_names`, re-exported there): a string literal naming one
  anywhere else in include/, plugins/ or dags/ fails the scan.
- Aliases move in two modules only: the store's in ``store/versions.py`` (``put_live``), the registry's in
  ``trail/registry.py`` (``move_alias``); :func:`ragtrail.models.agreement.go_live` composes them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ragtrail.core import stage_names
from ragtrail.trail import names

REPO = Path(__file__).resolve().parents[3]
ROOTS = ("include/ragtrail", "plugins", "dags")
NAMES_MODULES = {"include/ragtrail/trail/names.py", "include/ragtrail/core/stage_names.py"}
# A ``ragtrail.<x>`` string that is not a tag: a module path (``ragtrail.sources.pdf``) or one of these.
NOT_TAGS = {
    "ragtrail.progress": "the progress logger's name (core/progress.py, cli/console.py)",
    "ragtrail.stores": "the stores' entry-point group (store/resolve.py, pyproject.toml)",
    "ragtrail.source_digest": "the source watcher's key in Airflow's asset state store (rag/watch.py), not MLflow",
}
SUBPACKAGES = {p.stem for p in (REPO / "include/ragtrail").iterdir() if not p.name.startswith("_")}
TAG_LIKE = re.compile(r"(?:^|`)(ragtrail\.[A-Za-z_][\w.]*)")


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def tag_literals(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of each string constant (f-string parts included, docstrings not) that names a
    ``ragtrail.*`` tag: not a module path of the package, not one of :data:`NOT_TAGS`."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
            continue
        for match in TAG_LIKE.finditer(node.value):
            name = match.group(1).rstrip(".")
            first = name.split(".")[1]
            if first not in SUBPACKAGES and name not in NOT_TAGS:
                found.append((node.lineno, name))
    return sorted(found)


def _sources():
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            yield path.relative_to(REPO).as_posix(), path.read_text()


def test_the_scan_finds_tag_literals_and_spares_module_paths_logger_names_and_docstrings():
    source = '''"""A docstring may say ``ragtrail.status``."""
rec.tag(**{"ragtrail.gate": verdict})
flt = f"tags.`ragtrail.role` = 'parent'"
key = f"ragtrail.plot_{name}"
mod = "ragtrail.sources.pdf:extract_in_child"
log = logging.getLogger("ragtrail.progress")
'''
    assert tag_literals(source) == [(2, "ragtrail.gate"), (3, "ragtrail.role"), (4, "ragtrail.plot_")]


def test_no_ragtrail_tag_literal_outside_the_names_modules():
    offenders = [f"{path}:{line}: {name}" for path, text in _sources() if path not in NAMES_MODULES
                 for line, name in tag_literals(text)]
    assert not offenders, "tag names belong in ragtrail/trail/names.py (stages': core/stage_names.py):\n" + \
        "\n".join(offenders)


def test_the_names_module_re_exports_every_stage_name():
    declared = {k: v for k, v in vars(stage_names).items() if k.isupper()}
    assert declared, "stage_names declares nothing"
    assert {k: getattr(names, k, None) for k in declared} == declared


def test_every_ragtrail_tag_name_is_declared_once():
    values = [v for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and v.startswith("ragtrail.")
              and k.endswith(("_TAG", "_ATTR", "_SPAN"))]
    assert len(values) == len(set(values)), sorted(v for v in values if values.count(v) > 1)


ALIAS_MOVES = re.compile(r"\.(point_alias|set_registered_model_alias)\(")
ALIAS_MOVERS = {"include/ragtrail/store/versions.py": "point_alias",
                "include/ragtrail/trail/registry.py": "set_registered_model_alias"}


def _alias_calls(source: str) -> list[tuple[int, str]]:
    return [(node.lineno, node.func.attr) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("point_alias", "set_registered_model_alias")]


def test_aliases_move_only_in_the_store_and_registry_halves_of_go_live():
    calls = {path: _alias_calls(text) for path, text in _sources()}
    strays = [f"{path}:{line}: {what}" for path, found in calls.items() for line, what in found
              if ALIAS_MOVERS.get(path) != what]
    assert not strays, "move aliases through ragtrail.models.agreement.go_live (or its halves):\n" + "\n".join(strays)
    # The scan sees the two moves it allows (so it would see a third).
    assert {path: [w for _, w in calls[path]] for path in ALIAS_MOVERS} == {p: [w] for p, w in ALIAS_MOVERS.items()}


def test_the_params_the_compare_reads_are_params_the_pipeline_logs():
    # Param names are the run spec's field names (core/spec.py, the one table of run parameters).
    from ragtrail.core.spec import RUN_PARAMS
    from ragtrail.trail.queries import CONFIG_PARAMS

    assert set(CONFIG_PARAMS) <= set(RUN_PARAMS), set(CONFIG_PARAMS) - set(RUN_PARAMS)
