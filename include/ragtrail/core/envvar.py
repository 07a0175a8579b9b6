"""A typed environment setting, declared once: :class:`Var` (after MLflow's ``environment_variables.py``).

Every ``RAGTRAIL_*`` variable is one :class:`Var` in the table (:mod:`ragtrail.core.env` for the tracking
provider, :mod:`ragtrail.core.env_kit` for the RAG kit) and is read only through it. A value is read
from the variable, else from an old name it replaced, else (for the trail's options) from the
``[ragtrail]`` section of Airflow's configuration handed in, else the default. An empty value counts
as unset. A value that does not parse raises :class:`BadSetting` with one line naming the variable,
what was given and what is accepted::

    RAGTRAIL_PROGRESS_S='abc' is not a number ≥ 0 (seconds between progress lines; e.g. 15)

docs/configuration.md is generated from the table (``python -m ragtrail.core.envdoc``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class BadSetting(ValueError):
    """A setting's value does not parse; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class Var:
    """One environment variable: its name, type, default and meaning, and what it accepts.

    Args:
        name: the variable, ``RAGTRAIL_…``.
        type: ``str``, ``int``, ``float``, ``bool`` or ``Path``.
        default: the value when unset (``None``: none, or computed by the reader; see ``default_doc``).
        meaning: one line, used in the docs and in :class:`BadSetting`'s message.
        choices: the accepted values of a ``str`` setting (compared lower-cased).
        low, high: numeric bounds (inclusive).
        aliases: older names, read when ``name`` is unset.
        secret: never shown (no default in the docs, no value in an error).
        option: the ``[ragtrail]`` key of Airflow's configuration read when the variable is unset.
        default_doc: how the docs show a default that the reader computes.
        note: more for the docs, after the meaning.
        example: a good value for error messages (default: the default).
    """

    name: str
    type: type
    default: Any
    meaning: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    aliases: tuple[str, ...] = ()
    secret: bool = False
    option: str | None = None
    default_doc: str | None = None
    note: str = ""
    example: str = ""

    def raw(self, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """``(name, text)`` of the first of the variable and its old names that is set, else ``None``."""
        env = os.environ if env is None else env
        for name in (self.name, *self.aliases):
            text = env.get(name)
            if text is not None and text.strip() != "":
                return name, text
        return None

    def is_set(self, env: Mapping[str, str] | None = None) -> bool:
        """Whether the variable (or an old name of it) has a non-empty value."""
        return self.raw(env) is not None

    @property
    def defined(self) -> bool:
        """Whether the process environment sets it (MLflow's ``.defined``)."""
        return self.is_set()

    def get(self, env: Mapping[str, str] | None = None, section: Mapping[str, Any] | None = None) -> Any:
        """The value: the environment (``env``, default ``os.environ``), else ``section[option]``, else the default.

        Raises:
            BadSetting: the value given does not parse.
        """
        found = self.raw(env)
        if found is not None:
            return self.parse(found[1], found[0])
        if self.option and section:
            value = section.get(self.option)
            if value is not None and str(value).strip() != "":
                return self.parse(str(value), f"[ragtrail] {self.option}")
        return self.default

    def parse(self, text: str, where: str | None = None) -> Any:
        """``text`` as this setting's type; :class:`BadSetting` naming ``where`` (default: the variable)."""
        value = text.strip()
        try:
            if self.type is bool:
                if value.lower() not in _TRUE + _FALSE:
                    raise ValueError
                return value.lower() in _TRUE
            if self.type in (int, float):
                number = self.type(value)
                if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
                    raise ValueError
                return number
            if self.choices:
                if value.lower() not in self.choices:
                    raise ValueError
                return value.lower()
            return Path(value).expanduser() if self.type is Path else text
        except ValueError:
            shown = "(hidden)" if self.secret else repr(text)
            example = self.example or str(self.default)
            raise BadSetting(f"{where or self.name}={shown} is not {self.accepts()} "
                             f"({self.meaning}; e.g. {example})") from None

    def accepts(self) -> str:
        """What the setting accepts, in words (``a number ≥ 0``, ``one of lenient, strict``…)."""
        if self.type is bool:
            return "one of " + ", ".join(f"{t}/{f}" for t, f in zip(_TRUE, _FALSE, strict=True))
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.type in (int, float):
            what = "a whole number" if self.type is int else "a number"
            if self.low is not None and self.high is not None:
                return f"{what} from {self.low:g} to {self.high:g}"
            if self.low is not None:
                return f"{what} ≥ {self.low:g}"
            return what
        return "a path" if self.type is Path else "text"
