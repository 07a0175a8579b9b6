"""Where the store is: plain settings and the one resolver every caller goes through.

``resolve_store`` turns whatever a caller has — nothing (read the environment), a server URL, a
local folder, ``":memory:"``, a registered model's store description, or ready settings (the
Airflow edge builds them from the ``qdrant_default`` connection) — into :class:`StoreSettings`.
Outside Airflow the environment decides: ``RAGTRAIL_QDRANT_URL`` with ``RAGTRAIL_QDRANT_API_KEY``
(and ``RAGTRAIL_QDRANT_CA_BUNDLE`` for a private CA), else the data folder's local store, served by
the embedded kind ``RAGTRAIL_EMBEDDED_STORE`` names (``edge``, the default, or ``qdrant`` local mode).
The API key never travels in a URL, a description, a param or a log line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

MEMORY = ":memory:"
# Which implementation serves a server URL, by scheme; local folders and ``:memory:`` are Qdrant's.
# A new store adds its scheme here and a module ``ragtrail.store.<kind>`` with ``open_kind(settings)``.
KINDS = {"http": "qdrant", "https": "qdrant"}
# Which implementation serves a local folder: ``edge`` (Qdrant Edge, :mod:`ragtrail.store.edge`, the
# default; it migrates an earlier release's local-mode folder on first open) or ``qdrant`` (qdrant-client's
# local mode); ``RAGTRAIL_EMBEDDED_STORE`` picks it.
EMBEDDED = ("edge", "qdrant")
DEFAULT_EMBEDDED = "edge"


def embedded_kind(env) -> str:
    kind = env.get("RAGTRAIL_EMBEDDED_STORE") or DEFAULT_EMBEDDED
    if kind not in EMBEDDED:
        raise ValueError(f"RAGTRAIL_EMBEDDED_STORE={kind!r}: known embedded stores are {', '.join(EMBEDDED)}")
    return kind


@dataclass(frozen=True)
class StoreSettings:
    """One store. Exactly one of ``url`` (a server), ``path`` (local mode) or ``memory`` is set.

    ``verify``: TLS certificate check for ``https`` URLs — ``True``, ``False`` or a CA bundle path.
    ``kind``: the implementation (a module under :mod:`ragtrail.store`), from the URL's scheme.
    """

    url: str | None = None
    path: str | None = None
    memory: bool = False
    api_key: str | None = field(default=None, repr=False)
    prefix: str | None = None
    grpc_port: int = 6334
    prefer_grpc: bool = False
    verify: bool | str = True
    timeout_s: int | None = None
    kind: str = "qdrant"

    @property
    def mode(self) -> str:
        return "server" if self.url else "memory" if self.memory else "local"

    def describe(self) -> dict:
        """A secret-free description (for the registry, health and logs); ``resolve_store`` reads it back."""
        if self.url:
            return {"mode": "server", "url": self.url, **({"prefix": self.prefix} if self.prefix else {})}
        if self.memory:
            return {"mode": "memory"}
        return {"mode": "local", "path": self.path, **({"kind": self.kind} if self.kind != "qdrant" else {})}

    def with_timeout(self, timeout_s: int) -> StoreSettings:
        return replace(self, timeout_s=timeout_s)


def _server(url: str, env, **kw) -> StoreSettings:
    parts = urlsplit(url)
    if parts.username or parts.password or "api-key" in parts.query.lower() or "api_key" in parts.query.lower():
        raise ValueError("a Qdrant URL must not carry credentials: set RAGTRAIL_QDRANT_API_KEY "
                         "(or the qdrant_default connection's password) instead")
    kw.setdefault("api_key", env.get("RAGTRAIL_QDRANT_API_KEY") or None)
    ca = env.get("RAGTRAIL_QDRANT_CA_BUNDLE")
    if ca and "verify" not in kw:
        kw["verify"] = ca
    if parts.scheme not in KINDS:
        raise ValueError(f"no store speaks {parts.scheme}:// (known: {', '.join(sorted(KINDS))})")
    return StoreSettings(url=url.rstrip("/"), kind=KINDS[parts.scheme], **kw)


def resolve_store(target=None, env=None) -> StoreSettings:
    """The store a caller means.

    Args:
        target: ``None`` (the environment), :class:`StoreSettings`, ``"http(s)://…"`` (a server; the
            API key from ``RAGTRAIL_QDRANT_API_KEY``), ``":memory:"``, a folder (local mode), or a
            dict from :meth:`StoreSettings.describe`.
        env: the environment to read (default ``os.environ``).

    Example::

        resolve_store("https://qdrant.example:6333").describe()  # {"mode": "server", "url": ...}
    """
    env = os.environ if env is None else env
    if isinstance(target, StoreSettings):
        return target
    if isinstance(target, dict):
        if target.get("mode") == "server":
            return _server(target["url"], env, prefix=target.get("prefix"))
        if target.get("mode") == "memory":
            return resolve_store(MEMORY, env)
        return StoreSettings(path=str(Path(target["path"]).expanduser()), kind=target.get("kind") or embedded_kind(env))
    if target is None:
        if env.get("RAGTRAIL_QDRANT_URL"):
            return _server(env["RAGTRAIL_QDRANT_URL"], env)
        from ragtrail.core.settings import load

        return StoreSettings(path=str(load().qdrant_path), kind=embedded_kind(env))
    loc = str(target)
    if loc == MEMORY:
        return StoreSettings(memory=True)
    if "://" in loc:
        return _server(loc, env)
    return StoreSettings(path=str(Path(loc).expanduser()), kind=embedded_kind(env))


def store_label(settings: StoreSettings) -> str:
    """Which store, in words: ``the Qdrant Edge store at .data/qdrant``, ``the Qdrant server at https://…``."""
    if settings.url:
        return f"the Qdrant server at {settings.url}"
    if settings.memory:
        return "an in-memory Qdrant store"
    what = "Qdrant Edge store" if settings.kind == "edge" else "Qdrant local-mode store"
    return f"the {what} at {settings.path}"


def open_store(target=None, **kw):
    """Open the resolved store (a context manager yielding a :class:`~ragtrail.store.base.VectorStore`).

    Example::

        with open_store() as store:
            list_versions(store, "handbook")
    """
    from importlib import import_module

    settings = resolve_store(target)
    return import_module(f"ragtrail.store.{settings.kind}").open_kind(settings, **kw)
