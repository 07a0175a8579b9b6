"""Products: named document collections with a source, a schedule and a build configuration.

A products file (``include/products.yml``, or ``RAGTRAIL_PRODUCTS_FILE``) lists them; each becomes a
scheduled DAG (``dags/rag_products.py``). A product a user names only when triggering ``rag_ingest``
is an *ad-hoc* product: its id is derived from its name, so it always lands in the same experiment.

This module is also the single source of truth for experiment names, which the tracking layer and
the query layer both use::

    experiment_name("handbook")  # "ragtrail - handbook (5b1f0c52)"
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ragtrail.core import env
from ragtrail.core.settings import REPO_ROOT
from ragtrail.core.settings import load as load_settings
from ragtrail.core.spec import BY_NAME, FIELDS, NAME_PATTERN, VERSION_FIELDS

DEFAULT_PRODUCTS_FILE = REPO_ROOT / "include" / "products.yml"
# Ad-hoc products get uuid5(namespace, name): stable across machines and runs.
ADHOC_NAMESPACE = uuid.UUID("6f1c2a9e-4d0b-5e3a-9c71-2b8d4e6f0a13")
_NAME = re.compile(NAME_PATTERN)


class ProductsFileError(ValueError):
    """The products file is missing a field or has a wrong value; the message says where."""


@dataclass(frozen=True)
class Product:
    """One product: what to ingest, when, and the run-spec values its file sets (``settings``).

    Any run-spec name reads as an attribute: ``product.chunk_size`` is the file's value or the spec's
    default.
    """

    id: str
    name: str
    source: str
    schedule: str | None = None
    version: str = "v1"
    artifact_location: str | None = None
    description: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] | None = None  # {"schedule", "tolerance"} when the product has a canary DAG
    # {"queue", "aws_conn_id"}: the SQS queue that receives the source bucket's event notifications
    source_events: dict[str, str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name in BY_NAME:
            return self.settings.get(name, BY_NAME[name].default)
        raise AttributeError(name)

    @property
    def dag_id(self) -> str:
        return f"rag_ingest__{self.name}"

    def version_config(self) -> dict[str, Any]:
        """What its version is built with (the run spec's version-defining values)."""
        return {name: getattr(self, name) for name in VERSION_FIELDS}

    def conf(self) -> dict[str, Any]:
        """The ``rag_ingest`` run configuration (DAG params) this product builds with."""
        return {"source": self.source, "product": self.name, "version": self.version, **self.settings}


# Where run-spec rows sit in a products entry: "chunking.chunk_size" -> {"chunking": {"chunk_size"}}.
_PATHS = {f.products: f for f in FIELDS if f.products and f.name not in ("source", "version")}
_GROUPS: dict[str, set[str]] = {}
for _path in _PATHS:
    _head, _, _tail = _path.partition(".")
    _GROUPS.setdefault(_head, set()).add(_tail)
_TOP_KEYS = {"id", "name", "source", "schedule", "version", "artifact_location", "description", "canary",
             "source_events", *_GROUPS}
_CONN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")


def _settings(entry: dict, where: str) -> dict[str, Any]:
    """The spec values an entry sets, each checked against its row (the message names the field)."""
    groups = {}
    for head, tails in _GROUPS.items():
        group = entry.get(head) or {}
        if head == "embedder" and isinstance(group, str):  # a bare model name
            group = {"name": group}
        if not isinstance(group, dict) or set(group) - tails:
            raise ProductsFileError(f"{where}: {head} takes {', '.join(sorted(tails))}")
        groups[head] = group
    out = {}
    for path, row in _PATHS.items():
        head, _, tail = path.partition(".")
        if tail in groups[head]:
            try:
                out[row.name] = row.check(groups[head][tail])
            except ValueError as err:  # "<name> must be …" -> "<path in the file> must be …"
                raise ProductsFileError(f"{where}: {path}{str(err)[len(row.name):]}") from None
    return out


def products_file() -> Path:
    """Where the products file is: ``RAGTRAIL_PRODUCTS_FILE`` or ``include/products.yml``."""
    return env.PRODUCTS_FILE.get() or DEFAULT_PRODUCTS_FILE.expanduser()


def _product(entry: Any, where: str, base: Path) -> Product:
    if not isinstance(entry, dict):
        raise ProductsFileError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = set(entry) - _TOP_KEYS
    if unknown:
        raise ProductsFileError(f"{where}: unknown key(s) {sorted(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or "__" in name:
        raise ProductsFileError(f"{where}: name must match {NAME_PATTERN} without '__', got {name!r}")
    where = f"{where} ({name})"
    pid, source = _id(entry, name, where), _source(entry, where, base)  # checked in this order
    schedule = entry.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ProductsFileError(f"{where}: schedule must be a cron expression, a preset, on_change or null")
    version, settings = _version(entry, where), _settings(entry, where)
    return Product(id=pid, name=name, source=source, schedule=schedule, version=version,
                   artifact_location=_artifacts(entry, where, base),
                   description=str(entry.get("description") or ""), settings=settings, canary=_canary(entry, where),
                   source_events=_source_events(entry, where, source, schedule))


def _source_events(entry: dict, where: str, source: str, schedule: str | None) -> dict[str, str] | None:
    """The optional ``source_events``: ``{queue, aws_conn_id}``, the SQS queue (its URL) that receives the S3
    bucket's event notifications; the watcher then long-polls the queue instead of listing the prefix."""
    events = entry.get("source_events")
    if events is None:
        return None
    if isinstance(events, str):  # a bare queue URL
        events = {"queue": events}
    if not isinstance(events, dict) or set(events) - {"queue", "aws_conn_id"}:
        raise ProductsFileError(f"{where}: source_events takes a queue URL or {{queue, aws_conn_id}}")
    queue, conn = events.get("queue"), events.get("aws_conn_id", "aws_default")
    parsed = urlparse(queue) if isinstance(queue, str) else None
    if parsed is not None and (parsed.username or parsed.password):  # never echo a secret
        raise ProductsFileError(f"{where}: source_events.queue must not carry credentials: use aws_conn_id")
    if parsed is None or parsed.scheme not in ("https", "http") or not parsed.netloc \
            or not parsed.path.strip("/") or parsed.query or parsed.fragment:
        raise ProductsFileError(f"{where}: source_events.queue must be an SQS queue URL "
                                f"(https://sqs.<region>.amazonaws.com/<account>/<queue>), got {queue!r}")
    if not isinstance(conn, str) or not _CONN_ID.fullmatch(conn):
        raise ProductsFileError(f"{where}: source_events.aws_conn_id must be an Airflow connection id")
    if not source.startswith("s3://"):
        raise ProductsFileError(f"{where}: source_events needs an s3:// source (S3 sends the event notifications)")
    if schedule != "on_change":
        raise ProductsFileError(f"{where}: source_events needs schedule: on_change (the events start its runs)")
    return {"queue": queue, "aws_conn_id": conn}


def _canary(entry: dict, where: str) -> dict[str, Any] | None:
    """The optional ``canary``: ``true`` or ``{schedule, tolerance}`` (defaults ``@daily``, 0.05)."""
    canary = entry.get("canary")
    if canary in (None, False):
        return None
    canary = {} if canary is True else canary
    if not isinstance(canary, dict) or set(canary) - {"schedule", "tolerance"}:
        raise ProductsFileError(f"{where}: canary takes true or {{schedule, tolerance}}")
    schedule, tolerance = canary.get("schedule", "@daily"), canary.get("tolerance", 0.05)
    if not isinstance(schedule, str) or isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not 0 <= tolerance <= 1:
        raise ProductsFileError(f"{where}: canary.schedule must be a cron expression or preset, "
                                "canary.tolerance a number between 0 and 1")
    return {"schedule": schedule, "tolerance": float(tolerance)}


def _id(entry: dict, name: str, where: str) -> str:
    """The entry's ``id``, else the id derived from its name."""
    pid = entry.get("id")
    if pid is None:
        pid = adhoc_id(name)
    if not isinstance(pid, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{7,63}", pid):
        raise ProductsFileError(f"{where}: id must be 8-64 letters, digits, '_', '-', '.' (a UUID is best)")
    return pid


def _source(entry: dict, where: str, base: Path) -> str:
    """The required ``source``; a relative folder is relative to the products file."""
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ProductsFileError(f"{where}: source is required (a folder, file:// or s3:// URI)")
    return source if "://" in source else str((base / Path(source).expanduser()).resolve())


def _version(entry: dict, where: str) -> str:
    version = str(entry.get("version", "v1"))
    if not _NAME.match(version) or "__" in version:
        raise ProductsFileError(f"{where}: version must match {NAME_PATTERN} without '__'")
    return version


def _artifacts(entry: dict, where: str, base: Path) -> str | None:
    """The optional ``artifact_location``; a relative folder is relative to the products file."""
    artifacts = entry.get("artifact_location")
    if artifacts is None:
        return None
    if not isinstance(artifacts, str) or not artifacts.strip():
        raise ProductsFileError(f"{where}: artifact_location must be a path or s3:// URI")
    return artifacts if "://" in artifacts else str((base / Path(artifacts).expanduser()).resolve())


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
