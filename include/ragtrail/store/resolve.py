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
from functools import cache
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit

from ragtrail.core import env_kit

MEMORY = ":memory:"
# Stores register as MLflow's do: an entry point in this group names a kind (a URL scheme, or the kind of
# local folders and ``:memory:``) and the module that serves it, with ``open_kind(settings, **kw)``.
# A new store is that module plus one line under ``[project.entry-points."ragtrail.stores"]`` in its
# distribution's pyproject.toml (docs/architecture.md, "Add a store").
STORES_GROUP = "ragtrail.stores"
DEFAULT_KIND = "qdrant"  # serves ``:memory:`` (and local folders when RAGTRAIL_EMBEDDED_STORE=qdrant)
# ragtrail's own entries (pyproject.toml declares the same): built in, as MLflow registers its own stores
# in code, so that running from a source tree without installed metadata still finds them.
BUILTIN_STORES = {"qdrant": "ragtrail.store.qdrant", "http": "ragtrail.store.qdrant",
                  "https": "ragtrail.store.qdrant", "edge": "ragtrail.store.edge"}


@cache
def stores() -> dict[str, str]:
    """Every registered store: kind → module. The built-in entries, then the ``ragtrail.stores`` entry
    points of installed distributions (looked up once per process; ``stores.cache_clear()`` re-reads)."""
    from importlib.metadata import entry_points

    return {**BUILTIN_STORES, **{ep.name: ep.value for ep in entry_points(group=STORES_GROUP)}}


def embedded_kind(env=None) -> str:
    """Which registered store serves a local folder: ``RAGTRAIL_EMBEDDED_STORE`` — ``edge`` (Qdrant Edge,
    :mod:`ragtrail.store.edge`, the default; it migrates an earlier release's local-mode folder on first open)
    or ``qdrant`` (qdrant-client's local mode)."""
    return env_kit.EMBEDDED_STORE.get(env)


@dataclass(frozen=True)
class StoreSettings:
    """One store. Exactly one of ``url`` (a server), ``path`` (local mode) or ``memory`` is set.

    ``verify``: TLS certificate check for ``https`` URLs — ``True``, ``False`` or a CA bundle path.
    ``kind``: the registered store that serves it (:func:`stores`): the URL's scheme, else ``qdrant``.
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
    kind: str = DEFAULT_KIND

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
    kw.setdefault("api_key", env_kit.QDRANT_API_KEY.get(env))
    ca = env_kit.QDRANT_CA_BUNDLE.get(env)
    if ca and "verify" not in kw:
        kw["verify"] = ca
    known = stores()
    if parts.scheme not in known:
        raise ValueError(f"no store speaks {parts.scheme}:// (known: {', '.join(sorted(known))})")
    return StoreSettings(url=url.rstrip("/"), kind=parts.scheme, **kw)


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
        if env_kit.QDRANT_URL.is_set(env):
            return _server(env_kit.QDRANT_URL.get(env), env)
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
    settings = resolve_store(target)
    return import_module(stores()[settings.kind]).open_kind(settings, **kw)
