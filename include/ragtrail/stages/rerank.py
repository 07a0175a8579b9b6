"""The re-ranking seam: an optional cross-encoder that re-scores a search's first-stage hits.

Off by default. ``RAGTRAIL_RERANKER`` names a local folder holding a sentence-transformers ``CrossEncoder``
(``config.json``, the weights and the tokenizer, as ``save_pretrained`` writes them; nothing is downloaded).
When it is set, :func:`ragtrail.stages.search.search_many` fetches ``max(k, RAGTRAIL_RERANK_TOP_N)``
first-stage hits per query (dense today; whatever the store's query returns — fused hybrid hits too), the
cross-encoder scores each (question, chunk text) pair, and the best ``k`` by that score are returned. Each
re-ranked hit keeps what the first stage said: ``score`` becomes the cross-encoder's score,
``first_stage_score`` and ``first_stage_rank`` (1-based) are the first stage's.

Failure policy — fail clearly, before any query runs: a folder that is missing, is not a saved model, does not
load as a ``CrossEncoder`` or gives more than one score per pair raises :class:`RerankerError` (a
``LookupError``, so ``ragtrail search`` prints its one line and exits 1) naming the variable, the folder and
what is wrong. The search is not silently answered without the re-ranker the user asked for; unset the
variable to search without it. The model is loaded once per process (per folder and ``config.json`` change).

Example::

    RAGTRAIL_RERANKER=/models/ms-marco-MiniLM-L-6-v2 ragtrail search --product handbook "retry a task"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ragtrail.core import env_kit

BATCH = 32  # (question, chunk) pairs per forward pass


class RerankerError(LookupError):
    """The re-ranker named by ``RAGTRAIL_RERANKER`` cannot be used; the message says why."""


def _why(folder: Path, what: str) -> RerankerError:
    return RerankerError(f"{env_kit.RERANKER.name}={folder}: {what}; unset it to search without re-ranking")


@lru_cache(maxsize=2)
def _load(folder: str, stamp: int) -> Any:
    """The cross-encoder in ``folder`` (``stamp``: its config.json's mtime, so a replaced model reloads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(folder, local_files_only=True, device="cpu")


def load_reranker(folder: str | Path) -> Any:
    """Load (once per process) the ``CrossEncoder`` saved in ``folder``; :class:`RerankerError` if it can't be."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise _why(folder, "no such folder (a cross-encoder saved with save_pretrained is expected)")
    config = folder / "config.json"
    if not config.is_file():
        raise _why(folder, "no config.json in it: not a saved model folder")
    try:
        model = _load(str(folder.resolve()), config.stat().st_mtime_ns)
    except Exception as err:  # any load failure becomes one line that names the folder
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise _why(folder, f"does not load as a sentence-transformers CrossEncoder ({type(err).__name__}: {first})") \
            from err
    labels = getattr(model, "num_labels", 1)
    if labels != 1:
        raise _why(folder, f"the model gives {labels} scores per pair; a re-ranker gives one (num_labels=1)")
    return model


@dataclass(frozen=True)
class Reranker:
    """A loaded cross-encoder and how deep it re-scores (``top_n`` first-stage hits per query)."""

    folder: Path
    top_n: int
    model: Any

    def depth(self, k: int) -> int:
        """First-stage hits to fetch for ``k`` answers: ``top_n``, at least ``k``."""
        return max(k, self.top_n)

    def rerank_many(self, queries: dict[str, str], results: dict[str, list[dict]], k: int) -> dict[str, list[dict]]:
        """Re-score every query's hits (one batched pass over all pairs) and keep the best ``k`` of each."""
        pairs = [(queries[qid], hit.get("text") or "") for qid, hits in results.items() for hit in hits[:self.depth(k)]]
        if not pairs:
            return {qid: [] for qid in results}
        try:
            scores = [float(s) for s in self.model.predict(pairs, batch_size=BATCH, show_progress_bar=False,
                                                           convert_to_numpy=True).reshape(-1)]
        except Exception as err:
            raise _why(self.folder, f"scoring failed ({type(err).__name__}: {err})") from err
        out, at = {}, 0
        for qid, hits in results.items():
            first = hits[:self.depth(k)]
            rescored = [{**hit, "score": scores[at + i], "first_stage_score": hit.get("score"),
                         "first_stage_rank": i + 1} for i, hit in enumerate(first)]
            at += len(first)
            out[qid] = sorted(rescored, key=lambda h: (-h["score"], h["first_stage_rank"]))[:k]
        return out


def configured(env=None) -> Reranker | None:
    """The re-ranker the environment names (loaded, cached), or ``None`` when ``RAGTRAIL_RERANKER`` is unset."""
    folder = env_kit.RERANKER.get(env)
    if folder is None:
        return None
    return Reranker(folder=folder, top_n=env_kit.RERANK_TOP_N.get(env), model=load_reranker(folder))


def rerank_results(reranker: Reranker | None, queries: dict[str, str], results: dict[str, list[dict]],
                   k: int) -> dict[str, list[dict]]:
    """``results`` re-ranked by ``reranker`` (best ``k`` per query), or unchanged when there is none."""
    return results if reranker is None else reranker.rerank_many(queries, results, k)
