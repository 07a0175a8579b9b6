"""``ragtrail ingest``'s flags: one per run-spec row (:mod:`ragtrail.core.spec`), with its bounds and help.

The help is the row's description and, for a flag that is not required, the ``rag_ingest`` DAG's default
(a flag left out leaves the value to the DAG, or to the product's own DAG); a negated flag (``--no-promote``)
says what the negation does (the row's ``cli_help``); a required flag shows no default.
"""

from __future__ import annotations

import argparse
from typing import Any

from ragtrail.core.spec import FIELDS, Field

REQUIRED = ("source", "product")


def _arg_type(row: Field):
    def parse(text: str):
        try:
            return row.check(row.type(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    parse.__name__ = row.type.__name__  # argparse names the type in its "invalid … value" message
    return parse


def flag_help(row: Field, required: bool = False) -> str:
    """What the flag does, in words; argparse expands ``%`` in help, so a literal one is doubled."""
    if row.cli_help:
        text = row.cli_help
    elif required or row.default is None:
        text = row.description
    else:
        text = f"{row.description} (default: {row.default})"
    return text.replace("%", "%%")


def add_cli_flags(parser: argparse.ArgumentParser, required: tuple[str, ...] = REQUIRED) -> None:
    """One flag per row; unset flags stay ``None`` so the DAG's (or product's) defaults apply."""
    for r in FIELDS:
        if r.flag is None:
            continue
        help_ = flag_help(r, r.name in required)
        if r.type is bool:
            parser.add_argument(r.flag, dest=r.name, action="store_false" if r.default else "store_true",
                                default=None, help=help_)
        elif r.enum:
            parser.add_argument(r.flag, dest=r.name, choices=list(r.enum), help=help_)
        else:
            parser.add_argument(r.flag, dest=r.name, type=_arg_type(r), required=r.name in required, help=help_)


def conf_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run conf of parsed CLI flags: the flags that were given, nothing else."""
    return {r.name: getattr(args, r.name) for r in FIELDS if getattr(args, r.name, None) is not None}
