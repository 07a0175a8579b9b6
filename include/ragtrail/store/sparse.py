"""BM25 sparse vectors: the one tokenisation of chunks (at ingest) and of questions (at search).

The encoder is Qdrant's own BM25 as Qdrant Edge ships it (``qdrant_edge.Bm25``: the Rust tokenizer,
the Snowball English stemmer, Qdrant's English stop-word list, each token's id a stable hash of the
stemmed token) — the same model a Qdrant server applies to ``Document(model="qdrant/bm25")``, and nothing
to download. A chunk's vector holds, per distinct term, its BM25 term weight
``tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`` (saturation ``k1``, length normalisation ``b``); a
question's holds weight 1 per distinct term. IDF is *not* in either: the collection's sparse vector is
configured with Qdrant's ``Modifier.IDF``, so the store applies IDF from the collection's current
statistics at query time and it stays right as the collection grows.

:data:`CONFIG` goes into each collection's metadata (``sparse``); a search encodes its questions with the
config the collection was built with (:func:`encoder_for`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from ragtrail.store.base import Sparse

K1, B = 1.2, 0.75
# Expected chunk length in BM25 tokens (stop words removed). Chunks of the default 254 model tokens hold 74
# on average (median 81; 625 chunks of the PostgreSQL manual), yet 100 ranked better than 80 on both labelled
# sets (bench/results/hybrid.json, "avg_len_80"): a milder length penalty. Qdrant's default is 256.
AVG_LEN = 100.0
LANGUAGE = "english"
FILE_KEY = "bm25_config"  # the schema-metadata key of an embed batch's BM25 file: the config (:func:`key`) it was written with


def _library() -> str:
    try:
        return f"qdrant-edge-py {version('qdrant-edge-py')}"
    except PackageNotFoundError:  # pragma: no cover - installed with ragtrail
        return "qdrant-edge-py"


CONFIG = {"model": "bm25", "k1": K1, "b": B, "avg_len": AVG_LEN, "language": LANGUAGE, "library": _library()}


class Bm25Encoder:
    """Encode texts as BM25 sparse vectors (documents: term weights; queries: the distinct terms)."""

    def __init__(self, k1: float = K1, b: float = B, avg_len: float = AVG_LEN, language: str = LANGUAGE):
        import qdrant_edge as qe

        self.model = qe.Bm25(qe.Bm25Config(k=float(k1), b=float(b), avg_len=float(avg_len), language=language))

    def documents(self, texts: list[str]) -> list[Sparse]:
        return _encode(self.model.embed_document, texts)

    def queries(self, texts: list[str]) -> list[Sparse]:
        return _encode(self.model.embed_query, texts)


def _encode(embed, texts: list[str]) -> list[Sparse]:
    """Each text through one of the BM25 model's encoders, as a :class:`Sparse` (an empty text: no terms)."""
    out = []
    for text in texts:
        v = embed(text or "")
        out.append(Sparse(list(v.indices), [float(x) for x in v.values]))
    return out


@lru_cache(maxsize=8)
def _encoder(k1: float, b: float, avg_len: float, language: str) -> Bm25Encoder:
    return Bm25Encoder(k1, b, avg_len, language)


def encoder(config: dict | None = None) -> Bm25Encoder:
    """The (cached) encoder of a sparse config (a collection's ``sparse`` metadata; ``None``: :data:`CONFIG`)."""
    c = {**CONFIG, **(config or {})}
    return _encoder(float(c["k1"]), float(c["b"]), float(c["avg_len"]), str(c["language"]))


def key(config: dict | None) -> dict:
    """What decides a BM25 vector (not the library's version string): configs with one key encode alike."""
    c = {**CONFIG, **(config or {})}
    return {"model": c["model"], "k1": float(c["k1"]), "b": float(c["b"]), "avg_len": float(c["avg_len"]),
            "language": str(c["language"])}


def encoder_for(metadata: dict) -> Bm25Encoder:
    """The encoder a collection's chunks were encoded with (its ``sparse`` metadata)."""
    return encoder(metadata.get("sparse") if isinstance(metadata.get("sparse"), dict) else None)
