"""``ragtrail ingest --help`` says what each flag does: from the run spec, one line per row."""

from __future__ import annotations

import re

import pytest

from ragtrail.cli.main import build_parser
from ragtrail.core import spec


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """Each ``ingest`` flag's help text as argparse prints it (``%(default)s`` expanded, wrapping undone)."""
    ingest = build_parser()._subparsers._group_actions[0].choices["ingest"]
    formatter = ingest._get_formatter()
    return {a.option_strings[0]: " ".join(formatter._expand_help(a).split())
            for a in ingest._actions if a.option_strings and a.help}


def test_a_negated_flag_says_what_the_negation_does(helps):
    text = helps["--no-promote"]
    assert "default true" not in text.lower(), text  # the flag's value is False; "True" is what it turns off
    assert spec.BY_NAME["promote"].description not in text  # that is what the flag's absence does
    assert text == spec.BY_NAME["promote"].cli_help


def test_required_flags_show_no_default(helps, capsys):
    for flag in ("--source", "--product"):
        assert "default" not in helps[flag].lower(), helps[flag]
        with pytest.raises(SystemExit):
            build_parser().parse_args(["ingest", "--source" if flag == "--product" else "--product", "x"])
        assert f"the following arguments are required: {flag}" in capsys.readouterr().err


def test_no_flag_speaks_of_minio(helps):
    assert not [f for f, text in helps.items() if "minio" in text.lower()]


def test_every_optional_flag_names_its_default_once(helps):
    for row in spec.FIELDS:
        if row.flag is None or row.name in ("source", "product") or row.type is bool:
            continue
        text = helps[row.flag]
        assert len(re.findall(r"\bdefault\b", text, flags=re.I)) <= 1, text
        if row.default is not None:
            assert f"(default: {row.default})" in text, text


def test_every_flag_of_every_command_says_what_it_does():
    commands = build_parser()._subparsers._group_actions[0].choices
    silent = [(name, a.option_strings[0]) for name, command in commands.items() for a in command._actions
              if a.option_strings and not a.help]
    assert silent == []
