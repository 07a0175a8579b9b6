"""The MLflow Model Registry look-ups: ``ragtrail-<product>`` and its aliases (``candidate``, ``production``).

The CLI's and the edge's look-ups (:func:`production_collection`, :func:`version_record`,
:func:`set_production`, :func:`archive_versions`, :func:`record_decision`) and the registry webhook.
Registering a built version (the pyfunc retriever and its embedder) is the kit's:
:mod:`ragtrail.models.registration`.

Example::

    production_collection("handbook")  # "handbook__v2"
"""

from __future__ import annotations

from ragtrail.trail.guard import TrackingError
from ragtrail.trail.names import (
    APPROVAL_AT_TAG,
    APPROVAL_BY_TAG,
    APPROVAL_TAG,
    ARCHIVED_TAG,
    COLLECTION_TAG,
    EVAL_TAG_PREFIX,
    NDCG_AT_10,
    PRODUCTION_ALIAS,
    model_name,
    quote,
)


def production_collection(product: str, client=None) -> str:
    """The collection the registry's ``production`` alias of ``ragtrail-<product>`` refers to."""
    from mlflow.exceptions import MlflowException

    try:
        mv = (client or _client()).get_model_version_by_alias(model_name(product), PRODUCTION_ALIAS)
    except (MlflowException, TrackingError) as err:
        raise LookupError(f"{model_name(product)} has no production version in the registry") from err
    return mv.tags[COLLECTION_TAG]


def version_record(product: str, collection: str, client=None) -> dict | None:
    """The newest registered version of a collection: ``{"version", "tags"}``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        found = (client or _client()).search_model_versions(f"name = {quote(model_name(product))}",
                                                            max_results=10_000)
    except (MlflowException, TrackingError):  # no registry (or none reachable): nothing is known
        return None
    found = [v for v in found if v.tags.get(COLLECTION_TAG) == collection]
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return {"version": mv.version, "tags": dict(mv.tags)}


def set_production(product: str, collection: str, client=None) -> str | None:
    """Point the ``production`` alias at the newest registered version of ``collection``; its number."""
    client = client or _client()
    rec = version_record(product, collection, client)
    if rec is None:
        return None
    move_alias(client, product, PRODUCTION_ALIAS, rec["version"])
    return rec["version"]


def move_alias(client, product: str, alias: str, version) -> None:
    """Point an alias (``production``, ``candidate``) of ``ragtrail-<product>`` at a version number.

    The only place ragtrail moves a registry alias: :func:`set_production` is the registry's half of going
    live (the whole step is :func:`ragtrail.models.agreement.go_live`); registration moves ``candidate``.
    """
    client.set_registered_model_alias(model_name(product), alias, str(version))


def archive_versions(client, product: str, collections: list[str]) -> list[str]:
    """Tag the registered versions of pruned collections ``ragtrail.archived=true`` and drop the aliases
    that still name them; return the version numbers archived. Their runs and artifacts stay."""
    if not collections:
        return []
    name = model_name(product)
    gone = set(collections)
    aliases = dict(getattr(client.get_registered_model(name), "aliases", None) or {})  # alias -> version
    archived = []
    for mv in client.search_model_versions(f"name = {quote(name)}", max_results=10_000):
        if mv.tags.get(COLLECTION_TAG) not in gone or mv.tags.get(ARCHIVED_TAG) == "true":
            continue
        client.set_model_version_tag(name, mv.version, ARCHIVED_TAG, "true")
        for alias in [a for a, v in aliases.items() if str(v) == str(mv.version)]:
            client.delete_registered_model_alias(name, alias)
        archived.append(str(mv.version))
    return archived


def production_record(product: str, client=None) -> dict | None:
    """The registry's ``production`` version: ``{"version", "collection", "run_id", "ndcg_at_10"}`` or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        mv = (client or _client()).get_model_version_by_alias(model_name(product), PRODUCTION_ALIAS)
    except (MlflowException, TrackingError):
        return None
    ndcg = mv.tags.get(EVAL_TAG_PREFIX + NDCG_AT_10)
    return {"version": str(mv.version), "collection": mv.tags.get(COLLECTION_TAG), "run_id": mv.run_id,
            "ndcg_at_10": float(ndcg) if ndcg not in (None, "") else None}


def record_decision(client, product: str, version: str | None, run_id: str | None, *, outcome: str,
                    by: str, at: str) -> None:
    """Tag who decided a promotion and when (``ragtrail.approval*``) on the model version and the run."""
    tags = {APPROVAL_TAG: outcome, APPROVAL_BY_TAG: by, APPROVAL_AT_TAG: at}
    for key, value in tags.items():
        if version is not None:
            client.set_model_version_tag(model_name(product), version, key, value)
        if run_id is not None:
            client.set_tag(run_id, key, value)


def _client():
    from ragtrail.trail.client import guarded_client

    return guarded_client()


WEBHOOK_NAME = "ragtrail-production-alias"
WEBHOOK_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")


def ensure_webhook(client, url: str, secret: str) -> str:
    """Create (or update) the registry webhook that tells Airflow about ``@production`` moves; its id.

    Needs ``mlflow server`` with a SQL backend; MLflow signs each delivery with ``secret`` (HMAC-SHA256).
    """
    for hook in client.list_webhooks(max_results=1000):
        if hook.name == WEBHOOK_NAME:
            client.update_webhook(hook.webhook_id, url=url, events=list(WEBHOOK_EVENTS), secret=secret, status="ACTIVE")
            return hook.webhook_id
    return client.create_webhook(WEBHOOK_NAME, url, list(WEBHOOK_EVENTS), secret=secret,
                                 description="ragtrail: keep the Qdrant alias on @production").webhook_id
