"""The registered form of a version: an MLflow pyfunc retriever, and the registry look-ups of the CLI.

Like the query layer, this module is a documented exception to "only the tracking layer speaks
MLflow": a served or notebook-loaded model must import without Airflow. ``mlflow`` is imported lazily.

Example::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/ragtrail-handbook@production")
    model.predict(pd.DataFrame({"id": ["q1"], "text": ["How do retries work?"]}))
    # one row per hit: query_id, rank, doc_id, score, chunk_index, version, source, text
"""

from __future__ import annotations

import os

MODEL_PREFIX = "ragtrail-"
COLLECTION_TAG = "ragtrail.collection"
HIT_COLUMNS = ["query_id", "rank", "doc_id", "score", "chunk_index", "version", "source", "text"]

try:  # the class must subclass PythonModel for MLflow, yet this module must import without mlflow
    from mlflow.pyfunc import PythonModel as _Base  # noqa: TID253 - optional base class, see docstring
except ImportError:  # pragma: no cover - mlflow is always installed with ragtrail
    _Base = object


def model_name(product: str) -> str:
    return f"{MODEL_PREFIX}{product}"


class RagtrailRetriever(_Base):
    """A pyfunc retriever: embedder + collection reference + search settings (from ``model_config``).

    ``model_config``: ``product``, ``collection``, ``k``, ``store`` (the store it was built in, without
    secrets; used unless ``RAGTRAIL_QDRANT_URL`` / ``RAGTRAIL_HOME`` / ``RAGTRAIL_QDRANT_PATH`` point
    elsewhere; a server's API key comes from ``RAGTRAIL_QDRANT_API_KEY``). Older models carry
    ``qdrant_location`` instead.
    The embedder is the collection's own (recorded in its metadata), as in ``ragtrail search``.
    """

    def load_context(self, context) -> None:
        self.config = dict(context.model_config or {})

    def store(self):
        """The store to query, through the one resolver (:func:`ragtrail.store.resolve_store`)."""
        from ragtrail.store import resolve_store

        if any(os.environ.get(v) for v in ("RAGTRAIL_QDRANT_URL", "RAGTRAIL_HOME", "RAGTRAIL_QDRANT_PATH")):
            return resolve_store()
        return resolve_store(self.config.get("store") or self.config["qdrant_location"])

    def predict(self, context, model_input, params=None):
        """Answer a table of queries (column ``text``, optional ``id``); return one row per hit."""
        import pandas as pd

        from ragtrail.search import search_many

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            frame = frame.rename(columns={frame.columns[0]: "text"})
        ids = [str(i) for i in (frame["id"] if "id" in frame.columns else range(len(frame)))]
        k = int((params or {}).get("k", self.config.get("k", 10)))
        results = search_many(self.config["product"], dict(zip(ids, frame["text"].astype(str), strict=True)),
                              location=self.store(), k=k, collection=self.config["collection"])
        rows = [{"query_id": qid, "rank": rank, **{c: h.get(c) for c in HIT_COLUMNS[2:]}}
                for qid in ids for rank, h in enumerate(results[qid], 1)]
        return pd.DataFrame(rows, columns=HIT_COLUMNS)


def _client():
    from mlflow.tracking import MlflowClient

    from ragtrail.settings import load

    return MlflowClient(tracking_uri=load().mlflow_tracking_uri)


def production_collection(product: str) -> str:
    """The collection the registry's ``production`` alias of ``ragtrail-<product>`` refers to."""
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version_by_alias(model_name(product), "production")
    except MlflowException as err:
        raise LookupError(f"{model_name(product)} has no production version in the registry") from err
    return mv.tags[COLLECTION_TAG]


def version_record(product: str, collection: str) -> dict | None:
    """The newest registered version of a collection: ``{"version", "tags"}``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client().search_model_versions(f"name = '{model_name(product)}'", max_results=10_000)
    except MlflowException:
        return None
    found = [v for v in found if v.tags.get(COLLECTION_TAG) == collection]
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    return {"version": mv.version, "tags": dict(mv.tags)}


def set_production(product: str, collection: str) -> str | None:
    """Point the ``production`` alias at the newest registered version of ``collection``; its number."""
    rec = version_record(product, collection)
    if rec is None:
        return None
    _client().set_registered_model_alias(model_name(product), "production", rec["version"])
    return rec["version"]
