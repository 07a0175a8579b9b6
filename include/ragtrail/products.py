"""Products: named document collections with a source, a schedule and a build configuration.

A products file (``include/products.yml``, or ``RAGTRAIL_PRODUCTS_FILE``) lists them; each becomes a
scheduled DAG (``dags/rag_products.py``). A product a user names only when triggering ``rag_ingest``
is an *ad-hoc* product: its id is derived from its name, so it always lands in the same experiment.

This module is also the single source of truth for experiment names, which the tracking layer and
the query layer both use::

    experiment_name("handbook")  # "ragtrail - handbook (5b1f0c52)"
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragtrail.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_OVERLAP,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_EMBEDDER,
    REPO_ROOT,
)
from ragtrail.settings import load as load_settings

DEFAULT_PRODUCTS_FILE = REPO_ROOT / "include" / "products.yml"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"
# Ad-hoc products get uuid5(namespace, name): stable across machines and runs.
ADHOC_NAMESPACE = uuid.UUID("6f1c2a9e-4d0b-5e3a-9c71-2b8d4e6f0a13")
_NAME = re.compile(NAME_PATTERN)


class ProductsFileError(ValueError):
    """The products file is missing a field or has a wrong value; the message says where."""


@dataclass(frozen=True)
class Product:
    """One product: what to ingest, when, and with which configuration."""

    id: str
    name: str
    source: str
    schedule: str | None = None
    version: str = "v1"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP
    embedder: str = DEFAULT_EMBEDDER
    batch_size: int = DEFAULT_BATCH_SIZE
    artifact_location: str | None = None
    description: str = ""

    @property
    def dag_id(self) -> str:
        return f"rag_ingest__{self.name}"

    def conf(self) -> dict[str, Any]:
        """The ``rag_ingest`` run configuration (DAG params) this product builds with."""
        return {"source": self.source, "product": self.name, "version": self.version,
                "chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap,
                "embedder": self.embedder, "batch_size": self.batch_size}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def products_file() -> Path:
    """Where the products file is: ``RAGTRAIL_PRODUCTS_FILE`` or ``include/products.yml``."""
    return Path(os.environ.get("RAGTRAIL_PRODUCTS_FILE") or DEFAULT_PRODUCTS_FILE).expanduser()


def _int(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProductsFileError(f"{where}: {key} must be an integer between {lo} and {hi}, got {value!r}")
    return value


def _product(entry: Any, where: str, base: Path) -> Product:
    if not isinstance(entry, dict):
        raise ProductsFileError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = set(entry) - {"id", "name", "source", "schedule", "version", "chunking", "embedder",
                            "artifact_location", "description"}
    if unknown:
        raise ProductsFileError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or "__" in name:
        raise ProductsFileError(f"{where}: name must match {NAME_PATTERN} without '__', got {name!r}")
    where = f"{where} ({name})"
    pid = entry.get("id")
    if pid is None:
        pid = adhoc_id(name)
    if not isinstance(pid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{7,63}", pid):
        raise ProductsFileError(f"{where}: id must be 8-64 letters, digits, '_', '-', '.' (a UUID is best)")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ProductsFileError(f"{where}: source is required (a folder, file:// or s3:// URI)")
    if "://" not in source:  # a relative folder is relative to the products file
        source = str((base / Path(source).expanduser()).resolve())
    schedule = entry.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ProductsFileError(f"{where}: schedule must be a cron expression, a preset or null")
    version = str(entry.get("version", "v1"))
    if not _NAME.match(version) or "__" in version:
        raise ProductsFileError(f"{where}: version must match {NAME_PATTERN} without '__'")
    chunking = entry.get("chunking") or {}
    if not isinstance(chunking, dict) or set(chunking) - {"chunk_size", "chunk_overlap"}:
        raise ProductsFileError(f"{where}: chunking takes chunk_size and chunk_overlap")
    embedder = entry.get("embedder") or {}
    if isinstance(embedder, str):
        embedder = {"name": embedder}
    if not isinstance(embedder, dict) or set(embedder) - {"name", "batch_size"}:
        raise ProductsFileError(f"{where}: embedder is a model name or {{name, batch_size}}")
    artifacts = entry.get("artifact_location")
    if artifacts is not None and (not isinstance(artifacts, str) or not artifacts.strip()):
        raise ProductsFileError(f"{where}: artifact_location must be a path or s3:// URI")
    if artifacts is not None and "://" not in artifacts:
        artifacts = str((base / Path(artifacts).expanduser()).resolve())
    return Product(
        id=pid, name=name, source=source, schedule=schedule, version=version,
        chunk_size=_int(where, "chunk_size", chunking.get("chunk_size", DEFAULT_CHUNK_SIZE), 16, 510),
        chunk_overlap=_int(where, "chunk_overlap", chunking.get("chunk_overlap", DEFAULT_CHUNK_OVERLAP), 0, 256),
        embedder=str(embedder.get("name", DEFAULT_EMBEDDER)),
        batch_size=_int(where, "batch_size", embedder.get("batch_size", DEFAULT_BATCH_SIZE), 1, 1024),
        artifact_location=artifacts, description=str(entry.get("description") or ""),
    )


@lru_cache(maxsize=8)
def _parse(path: str, mtime_ns: int) -> tuple[Product, ...]:
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise ProductsFileError(f"{path}: not valid YAML: {err}") from err
    entries = doc.get("products") if isinstance(doc, dict) else None
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ProductsFileError(f"{path}: 'products' must be a list")
    products = tuple(_product(e, f"{path}: products[{i}]", Path(path).parent) for i, e in enumerate(entries))
    for key in ("name", "id"):
        seen: set[str] = set()
        for p in products:
            if getattr(p, key) in seen:
                raise ProductsFileError(f"{path}: two products share the {key} {getattr(p, key)!r}")
            seen.add(getattr(p, key))
    return products


def load_products(path: str | Path | None = None) -> list[Product]:
    """Read and validate the products file; a missing file means no products.

    Raises:
        ProductsFileError: naming the file, the entry and the field that is wrong.
    """
    path = Path(path) if path is not None else products_file()
    if not path.exists():
        return []
    return list(_parse(str(path.resolve()), path.stat().st_mtime_ns))


def adhoc_id(name: str) -> str:
    """The id of a product known only by its name: ``uuid5`` of the name, the same everywhere."""
    return str(uuid.uuid5(ADHOC_NAMESPACE, name))


def get_product(name: str) -> Product | None:
    """The product of that name in the products file, or ``None`` for an ad-hoc product."""
    return next((p for p in load_products() if p.name == name), None)


def product_id(name: str) -> str:
    """The id of a product: from the products file, else derived from its name."""
    product = get_product(name)
    return product.id if product is not None else adhoc_id(name)


def experiment_name(product: str, prefix: str | None = None) -> str:
    """The MLflow experiment of a product: ``<prefix> - <name> (<first 8 chars of its id>)``.

    The prefix is ``RAGTRAIL_EXPERIMENT_PREFIX`` (default ``ragtrail``).
    """
    prefix = prefix if prefix is not None else load_settings().experiment_prefix
    return f"{prefix} - {product} ({product_id(product)[:8]})"


def artifact_location(product: str) -> str:
    """Where a new experiment of this product keeps artifacts: the product's own setting, else
    ``<RAGTRAIL_MLFLOW_ARTIFACT_ROOT>/<name>`` (a local folder or an ``s3://`` prefix)."""
    configured = get_product(product)
    if configured is not None and configured.artifact_location:
        return configured.artifact_location
    root = load_settings().mlflow_artifact_root.rstrip("/")
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", product)
    return f"{root}/{safe}"
