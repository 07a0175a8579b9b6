"""One settings table: every ``RAGTRAIL_*`` variable declared once and read only through it; the page made from it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ragtrail.core import env, env_kit, envdoc
from ragtrail.core.envvar import BadSetting, Var
from ragtrail.core.progress import every_s
from ragtrail.trail.guard import Policy

ROOT = Path(__file__).resolve().parents[3]
TABLE_MODULES = {ROOT / "include/ragtrail/core" / f for f in ("env.py", "env_kit.py", "envvar.py", "envdoc.py")}
# A variable's name in any text: not part of a longer name (AIRFLOW__RAGTRAIL__X is Airflow's), and not the
# stem of a family written out in prose (``RAGTRAIL_MLFLOW_{TIMEOUT_S,…}``).
NAME = re.compile(r"(?<![A-Za-z0-9_])RAGTRAIL_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_{])")
BARE = re.compile(r"RAGTRAIL_[A-Z0-9_]+")


def code_files() -> list[Path]:
    files = [p for top in ("include", "plugins", "dags") for p in (ROOT / top).rglob("*.py")]
    return sorted(p for p in files if "sample_corpus" not in p.parts)


def undeclared(text: str) -> set[str]:
    """Names in ``text`` that the table does not declare (old names count as declared)."""
    return set(NAME.findall(text)) - set(envdoc.declared())


def direct_reads(source: str) -> list[str]:
    """Where code handles a variable by its bare name instead of through the table: a string that is just a
    ``RAGTRAIL_*`` name (``os.environ.get("RAGTRAIL_X")``, ``{"RAGTRAIL_X": …}``) or an f-string that builds
    one. Docstrings and messages that mention a name in prose are fine."""
    tree = ast.parse(source)
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | parts:
            if BARE.fullmatch(node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
        elif isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
            if isinstance(head, ast.Constant) and BARE.fullmatch(str(head.value)):
                found.append(f"line {node.lineno}: f-string {head.value!r}…")
    return found


def test_the_scans_catch_what_they_are_for():
    """The two checks below fail on the shapes they look for (so a green run means something)."""
    assert undeclared("x = os.environ.get('RAGTRAIL_NOT_A_SETTING')") == {"RAGTRAIL_NOT_A_SETTING"}
    assert undeclared("RAGTRAIL_PDF_TIMEOUT_S, AIRFLOW__RAGTRAIL__TRACKING_MODE, RAGTRAIL_MLFLOW_{TIMEOUT_S}") == set()
    reads = direct_reads('"""Set RAGTRAIL_HOME."""\nimport os\n'
                         'a = os.environ.get("RAGTRAIL_HOME")\n'
                         'b = os.getenv("RAGTRAIL_PROGRESS_S", "15")\n'
                         'c = "RAGTRAIL_TRACKING" in os.environ\n'
                         'd = os.environ[f"RAGTRAIL_MLFLOW_{name}"]\n'
                         'e = {"RAGTRAIL_HOME": "/x"}\n'
                         'f = print("set RAGTRAIL_HOME to a folder")\n')
    assert [r.split(":")[0] for r in reads] == ["line 3", "line 4", "line 5", "line 6", "line 7"]


def test_no_code_reads_an_undeclared_variable():
    """Every ``RAGTRAIL_*`` name in include/, plugins/ and dags/ (code, docstrings, messages) is in the table."""
    found = {str(p.relative_to(ROOT)): sorted(names) for p in code_files() if (names := undeclared(p.read_text()))}
    assert found == {}


def test_variables_are_read_only_through_the_table():
    """Outside the table modules no code reads (or writes) a variable by its bare name."""
    found = {str(p.relative_to(ROOT)): reads for p in code_files()
             if p not in TABLE_MODULES and (reads := direct_reads(p.read_text()))}
    assert found == {}


def test_every_variable_is_declared_once_with_a_meaning():
    names = [name for var in (*env.ALL, *env_kit.ALL) for name in (var.name, *var.aliases)]
    assert len(names) == len(set(names)) and all(n.startswith("RAGTRAIL_") for n in names)
    for var in (*env.ALL, *env_kit.ALL):
        assert var.meaning and "\n" not in var.meaning, var.name
        assert var.type in (str, int, float, bool, Path), var.name


def test_the_configuration_page_is_generated_from_the_table():
    """docs/configuration.md's tables are what the table says (``make docs``); a changed row is put back."""
    page = envdoc.PAGE.read_text()
    assert envdoc.updated(page) == page, "docs/configuration.md is stale: run `make docs`"
    stale = page.replace("| `RAGTRAIL_PROGRESS_S` | `15` |", "| `RAGTRAIL_PROGRESS_S` | `30` |")
    assert stale != page and envdoc.updated(stale) == page
    for var in (*env.ALL, *env_kit.ALL):
        assert f"| `{var.name}`" in page, var.name
    done = subprocess.run([sys.executable, "-m", "ragtrail.core.envdoc", "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_bad_value_names_the_variable_and_what_it_accepts(monkeypatch):
    monkeypatch.setenv("RAGTRAIL_PROGRESS_S", "abc")
    with pytest.raises(BadSetting) as err:
        every_s()
    assert str(err.value) == "RAGTRAIL_PROGRESS_S='abc' is not a number ≥ 0 (seconds between progress lines; e.g. 15)"
    monkeypatch.setenv("RAGTRAIL_PROGRESS_S", "-1")
    with pytest.raises(BadSetting, match=r"RAGTRAIL_PROGRESS_S='-1' is not a number ≥ 0"):
        every_s()
    monkeypatch.setenv("RAGTRAIL_TRACKING", "maybe")
    with pytest.raises(BadSetting, match=r"RAGTRAIL_TRACKING='maybe' is not one of 1/0, true/false, yes/no, on/off"):
        env.TRACKING.get()
    monkeypatch.setenv("RAGTRAIL_UI_MLFLOW_PORT", "70000")
    with pytest.raises(BadSetting, match=r"RAGTRAIL_UI_MLFLOW_PORT='70000' is not a whole number from 1 to 65535"):
        env_kit.UI_MLFLOW_PORT.get()


def test_a_bad_airflow_option_is_named_as_such(monkeypatch):
    """A value from the ``[ragtrail]`` section handed in is named by its option; the environment still wins."""
    monkeypatch.delenv("RAGTRAIL_MLFLOW_BUDGET_S", raising=False)
    with pytest.raises(BadSetting, match=r"^\[ragtrail\] mlflow_budget_s='soon' is not a number ≥ 0"):
        Policy.from_env({"mlflow_budget_s": "soon"})
    assert Policy.from_env({"mlflow_budget_s": "12"}).budget_s == 12.0
    monkeypatch.setenv("RAGTRAIL_MLFLOW_BUDGET_S", "9")
    assert Policy.from_env({"mlflow_budget_s": "soon"}).budget_s == 9.0


def test_empty_means_unset_and_a_secret_is_never_shown(monkeypatch):
    monkeypatch.setenv("RAGTRAIL_PROGRESS_S", "")
    assert every_s() == 15.0 and not env.PROGRESS_S.is_set() and not env.PROGRESS_S.defined
    monkeypatch.setenv("RAGTRAIL_PROGRESS_S", " 2.5 ")
    assert every_s() == 2.5 and env.PROGRESS_S.defined
    secret = Var("RAGTRAIL_X_TOKEN", int, None, "a secret number", secret=True)
    with pytest.raises(BadSetting) as err:
        secret.get({"RAGTRAIL_X_TOKEN": "hunter2"})
    assert "hunter2" not in str(err.value) and "RAGTRAIL_X_TOKEN=(hidden)" in str(err.value)


def test_an_old_name_is_still_read_and_the_new_one_wins(monkeypatch):
    monkeypatch.delenv("RAGTRAIL_PARSE_TIMEOUT_S", raising=False)
    monkeypatch.setenv("RAGTRAIL_PDF_TIMEOUT_S", "7")
    assert env_kit.PARSE_TIMEOUT_S.get() == 7.0
    monkeypatch.setenv("RAGTRAIL_PDF_TIMEOUT_S", "x")
    with pytest.raises(BadSetting, match="^RAGTRAIL_PDF_TIMEOUT_S='x'"):  # named as the user wrote it
        env_kit.PARSE_TIMEOUT_S.get()
    monkeypatch.setenv("RAGTRAIL_PARSE_TIMEOUT_S", "9")
    assert env_kit.PARSE_TIMEOUT_S.get() == 9.0


def test_the_parser_budgets_follow_the_old_names_in_a_fresh_process():
    """The sandbox reads its budgets when imported: a process that sets only the old names gets them."""
    code = ("from ragtrail.sources.sandbox import DEFAULT_MAX_MEMORY_MB, DEFAULT_TIMEOUT_S; "
            "print(DEFAULT_TIMEOUT_S, DEFAULT_MAX_MEMORY_MB)")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAGTRAIL_P")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**clean, "RAGTRAIL_PDF_TIMEOUT_S": "33", "RAGTRAIL_PDF_MAX_MEMORY_MB": "700"})
    assert done.stdout.split() == ["33.0", "700"]


def test_the_airflow_options_are_the_tables():
    """Each ``[ragtrail]`` option the provider declares to Airflow is a table entry's, and the other way round."""
    from ragtrail_airflow import get_provider_info

    declared_to_airflow = set(get_provider_info()["config"]["ragtrail"]["options"])
    assert declared_to_airflow == {var.option for var in (*env.ALL, *env_kit.ALL) if var.option}
