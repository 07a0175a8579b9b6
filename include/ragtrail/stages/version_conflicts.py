"""Build conflicts: a product whose configuration no longer matches the collection built under its version's name
(the products file changed, the version did not) — found before any DAG run fails on it in ``plan``."""

from __future__ import annotations

import re

from ragtrail.stages.plan import config_clash
from ragtrail.store import collection_name, open_store


def build_conflicts(products: list, location=None, lock_timeout_s: float = 5.0) -> list[str]:
    """Products whose version was already built with another configuration: one message each, with the fix.

    A version is one build configuration (docs/pipeline.md): a products entry that asks for another one
    under an existing version's name would fail every run of its DAG in ``plan``. ``location``: the store
    (anything :func:`ragtrail.store.resolve_store` takes). A local store is read without opening it (its
    ``meta.json``: no lock, cheap enough for every DAG parse); a server is asked.

    Example::

        build_conflicts(load_products())
        # ["products.yml: product handbook version v1 was built with chunk_size=254, chunk_overlap=0 ..."]
    """
    from ragtrail.core.products import products_file
    from ragtrail.store import resolve_store

    settings = resolve_store(location)
    built = _built_metadata(settings, [collection_name(p.name, p.version) for p in products], lock_timeout_s)
    out = []
    for p in products:
        name = collection_name(p.name, p.version)
        clash = config_clash(built[name], p.version_config()) if name in built else {}
        if clash:
            was = ", ".join(f"{k}={was!r}" for k, (was, _) in clash.items())
            asked = ", ".join(f"{k}={now!r}" for k, (_, now) in clash.items())
            out.append(f"{products_file().name}: product {p.name} version {p.version} was built with {was} "
                       f"({name}), but its entry asks for {asked}: a new configuration needs a new version "
                       f"- bump its version (e.g. version: {next_version(p.version)}) or set it back to what "
                       f"{p.version} was built with")
    return out


def _built_metadata(settings, names: list[str], lock_timeout_s: float) -> dict[str, dict]:
    """The metadata of those of ``names`` the store holds (nothing when it cannot tell)."""
    if not names or settings.mode == "memory":
        return {}
    if settings.mode == "local":
        from ragtrail.store.peek import local_metadata

        return {k: v for k, v in (local_metadata(settings.path) or {}).items() if k in names}
    with open_store(settings.with_timeout(5), lock_timeout_s=lock_timeout_s) as store:
        return {name: store.metadata(name) for name in names if store.exists(name)}


def next_version(version: str) -> str:
    """A name for the next version: ``v1`` → ``v2``, anything else gets ``-2``."""
    m = re.fullmatch(r"(.*?)(\d+)", version)
    return f"{m.group(1)}{int(m.group(2)) + 1}" if m else f"{version}-2"
