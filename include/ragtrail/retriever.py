"""The registered form of a version: an MLflow pyfunc retriever (:mod:`ragtrail.trail.registry` logs it).

A documented exception to "only the trail speaks MLflow": the class subclasses MLflow's
``PythonModel``, and it stays at this import path because registered models refer to it by that
path (a model is pickled by reference). ``mlflow`` is imported lazily.

Example::

    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model("models:/ragtrail-handbook@production")
    model.predict(pd.DataFrame({"id": ["q1"], "text": ["How do retries work?"]}))
    # one row per hit: query_id, rank, doc_id, score, chunk_index, version, source, text
"""

from __future__ import annotations

import time

HIT_COLUMNS = ["query_id", "rank", "doc_id", "score", "chunk_index", "version", "source", "text"]

try:  # the class must subclass PythonModel for MLflow, yet this module must import without mlflow
    from mlflow.pyfunc import PythonModel as _Base  # noqa: TID253 - optional base class, see docstring
except ImportError:  # pragma: no cover - mlflow is always installed with ragtrail
    _Base = object


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
        from ragtrail.core import env, env_kit
        from ragtrail.store import resolve_store

        if any(v.is_set() for v in (env_kit.QDRANT_URL, env.HOME, env.QDRANT_PATH)):
            return resolve_store()
        return resolve_store(self.config.get("store") or self.config["qdrant_location"])

    def predict(self, context, model_input, params=None):
        """Answer a table of queries (column ``text``, optional ``id``); return one row per hit."""
        import pandas as pd

        from ragtrail.stages.search import search_many
        from ragtrail.trail.traces import trace_search

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            frame = frame.rename(columns={frame.columns[0]: "text"})
        ids = [str(i) for i in (frame["id"] if "id" in frame.columns else range(len(frame)))]
        k = int((params or {}).get("k", self.config.get("k", 10)))
        queries = dict(zip(ids, frame["text"].astype(str), strict=True))
        started = time.time_ns()
        results = search_many(self.config["product"], queries, location=self.store(), k=k,
                              collection=self.config["collection"], mode=(params or {}).get("mode") or None)
        trace_search("retriever.predict", self.config["product"], queries, self.config["collection"],
                     self.config.get("version"), k, results, started, time.time_ns())
        rows = [{"query_id": qid, "rank": rank, **{c: h.get(c) for c in HIT_COLUMNS[2:]}}
                for qid in ids for rank, h in enumerate(results[qid], 1)]
        return pd.DataFrame(rows, columns=HIT_COLUMNS)

