"""Tune chunking, the embedder and the retrieval mode for retrieval quality with Optuna's TPE sampler.

The space is small (chunk sizes in steps of 16 × four overlaps × the embedders × ten retrieval modes —
dense, sparse, hybrid with RRF or DBSF at four BM25 weights: ~500 points), so the
sampler starts from the live configuration (enqueued as trial 0) and spends only a few random
start-up trials before TPE takes over. Overlap is a conditional parameter: only overlaps below half
the sampled chunk size are offered, so no trial is ever clamped. With a ``storage`` URL (an Optuna
RDB, e.g. a SQLite file keyed by the DAG run) a retried task resumes the study where it stopped.

Each trial chunks the ingested documents with one configuration, embeds the chunks (texts already
embedded by an earlier trial with the same embedder are reused), loads them into an in-memory Qdrant
collection (through :mod:`ragtrail.store`, both vectors: the mode is a query-time choice) and scores it in
the trial's retrieval mode on the query set with :mod:`ragtrail.stages.evaluation`. Nothing touches the
product's real collections; the best configuration can then be built as a new version.

Example::

    result = tune_chunking("work/docs.parquet", load_queries("questions.jsonl"), workdir="work",
                           n_trials=10, timeout_s=600)
    result["best_params"]  # {"chunk_size": 160, "chunk_overlap": 32, "embedder": "all-MiniLM-L6-v2",
                           #  "retrieval_mode": "hybrid", "fusion": "dbsf", "sparse_weight": 0.25}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.core.settings import (
    DEFAULT_FUSION,
    DEFAULT_RETRIEVAL_MODE,
    DEFAULT_SPARSE_WEIGHT,
    LEGACY_SPARSE_WEIGHT,
)
from ragtrail.core.stage_names import PLOT_TAG_PREFIX

OVERLAPS = (0, 16, 32, 64)
OBJECTIVE = "ndcg_at_10"
TRIAL_BACKEND = "torch"  # trials embed chunks and questions alike with it
STARTUP_TRIALS = 4  # random trials before TPE; the space has ~200 points, 10 would be a large share of a study
RETRIEVAL_MODES = ("dense", "sparse", "hybrid")
FUSIONS = ("rrf", "dbsf")  # searched only for hybrid (a conditional parameter)
SPARSE_WEIGHTS = (0.15, 0.25, 0.35, 0.5)  # the BM25 side's weight, hybrid only (0.25 the default, 0.5 Qdrant's equal)


def overlap_choices(chunk_size: int) -> tuple[int, ...]:
    """The overlaps a trial may pick for ``chunk_size``: those below half of it (0 always)."""
    return tuple(o for o in OVERLAPS if o == 0 or o < chunk_size // 2)


def suggest(trial, lo: int, hi: int, embedders: tuple[str, ...]) -> dict:
    """Sample one valid configuration; overlap's choices (and name) depend on the chunk size."""
    size = trial.suggest_int("chunk_size", lo, hi, step=16 if hi - lo >= 32 else 1)
    choices = overlap_choices(size)
    # One parameter name per choice set: Optuna's categorical distributions must not change.
    name = "chunk_overlap" if choices == OVERLAPS else f"chunk_overlap_upto_{max(choices)}"
    out = {"chunk_size": size, "chunk_overlap": trial.suggest_categorical(name, list(choices)),
           "embedder": trial.suggest_categorical("embedder", list(embedders)),
           "retrieval_mode": trial.suggest_categorical("retrieval_mode", list(RETRIEVAL_MODES))}
    hybrid = out["retrieval_mode"] == "hybrid"
    out["fusion"] = trial.suggest_categorical("fusion", list(FUSIONS)) if hybrid else DEFAULT_FUSION
    out["sparse_weight"] = trial.suggest_categorical("sparse_weight", list(SPARSE_WEIGHTS)) if hybrid \
        else DEFAULT_SPARSE_WEIGHT
    return out


def nearest_weight(weight) -> float:
    """The searched sparse weight nearest ``weight`` (the live configuration's may lie between them)."""
    w = DEFAULT_SPARSE_WEIGHT if weight is None else float(weight)
    return min(SPARSE_WEIGHTS, key=lambda c: (abs(c - w), c))


def trial_params(params: dict) -> dict:
    """A trial's Optuna params as a configuration (the conditional overlap under its own name; a fusion and a
    sparse weight only for hybrid, else the defaults; a study from before modes were searched: the default
    mode; a hybrid trial from before weights were searched: the equal weight it was scored with)."""
    overlap = next(v for k, v in params.items() if k.startswith("chunk_overlap"))
    return {"chunk_size": params["chunk_size"], "chunk_overlap": overlap, "embedder": params["embedder"],
            "retrieval_mode": params.get("retrieval_mode", DEFAULT_RETRIEVAL_MODE),
            "fusion": params.get("fusion", DEFAULT_FUSION),
            "sparse_weight": params.get("sparse_weight",
                                        LEGACY_SPARSE_WEIGHT if "fusion" in params else DEFAULT_SPARSE_WEIGHT)}


def load_trial_collection(store, chunks_path: str | Path, embedder: str, cache: dict) -> int:
    """Fill collection ``trial`` of ``store`` (in memory) with the chunks of ``chunks_path``; their count.

    The collection records its embedder, backend, BM25 config and retrieval mode like a real version (the
    default mode), so the evaluation searches the way a search of such a version would.
    """
    import pyarrow.parquet as pq

    from ragtrail.stages.embedding import embed_texts
    from ragtrail.store import Point
    from ragtrail.store.sparse import CONFIG, encoder

    rows = pq.read_table(chunks_path, columns=["doc_id", "text", "chunk_hash"]).to_pylist()
    todo = sorted({r["chunk_hash"]: r["text"] for r in rows if (embedder, r["chunk_hash"]) not in cache}.items())
    if todo:
        for (h, _), vec in zip(todo, embed_texts([t for _, t in todo], embedder, backend=TRIAL_BACKEND), strict=True):
            cache[(embedder, h)] = vec
    dim = len(next(iter(cache.values()))) if cache else 384
    store.create("trial", dim, {"embedder": embedder, "embed_backend": TRIAL_BACKEND, "sparse": dict(CONFIG),
                                "retrieval_mode": DEFAULT_RETRIEVAL_MODE, "fusion": DEFAULT_FUSION,
                                "sparse_weight": DEFAULT_SPARSE_WEIGHT})
    sparse = encoder(CONFIG).documents([r["text"] for r in rows])
    store.upsert("trial", [Point(id=i, vector=cache[(embedder, r["chunk_hash"])].tolist(), sparse=sv,
                                 payload={"doc_id": r["doc_id"]})
                           for i, (r, sv) in enumerate(zip(rows, sparse, strict=True))])
    return len(rows)


def tune_chunking(
    docs_path: str | Path,
    queries: list[dict],
    *,
    workdir: str | Path,
    embedders: tuple[str, ...] = ("all-MiniLM-L6-v2",),
    chunk_size_range: tuple[int, int] = (64, 254),
    n_trials: int = 10,
    timeout_s: float | None = 600,
    seed: int = 0,
    start: dict | None = None,
    storage: str | None = None,
    study_name: str = "ragtrail-tune",
    on_trial: Callable[[int, dict, dict], None] | None = None,
    recorder: Recorder | None = None,
) -> dict:
    """Search chunk size, overlap, embedder and retrieval mode (+ fusion, sparse weight) for the best nDCG@10, bounded by
    trials and time.

    Args:
        docs_path: the ingest stage's ``docs.parquet``.
        queries: a loaded query set (:func:`ragtrail.stages.evaluation.load_queries`).
        start: the live configuration (``chunk_size``, ``chunk_overlap``, optionally ``retrieval_mode`` and
            ``fusion``, ``sparse_weight``: default hybrid + the default fusion and weight), tried first when valid.
        storage: an Optuna storage URL; the study ``study_name`` there is resumed when it exists, and
            ``n_trials`` counts the trials it already finished.
        on_trial: called with ``(trial number, params, metrics)`` after each finished trial.

    Returns:
        ``{"best_params", "best_value", "trials", "plots"}``; ``plots`` are PNG paths in ``workdir``.
    """
    import optuna

    from ragtrail.stages.chunking import chunk_documents
    from ragtrail.stages.evaluation import evaluate_collection
    from ragtrail.store import MEMORY, open_store

    rec = recorder or Recorder()
    workdir = Path(workdir)
    (workdir / "trials").mkdir(parents=True, exist_ok=True)
    lo, hi = chunk_size_range
    rec.param(n_trials=n_trials, timeout_s=timeout_s, embedders=list(embedders), chunk_size_range=[lo, hi],
              overlaps=list(OVERLAPS), retrieval_modes=list(RETRIEVAL_MODES), fusions=list(FUSIONS),
              sparse_weights=list(SPARSE_WEIGHTS), sampler=f"TPE({STARTUP_TRIALS} start-up trials)", seed=seed,
              objective=OBJECTIVE, queries=len(queries), storage="rdb" if storage else "memory")
    cache: dict = {}

    def objective(trial) -> float:
        params = suggest(trial, lo, hi, tuple(embedders))
        t0 = time.perf_counter()
        out = chunk_documents(docs_path, workdir, product="tune", chunk_size=params["chunk_size"],
                              chunk_overlap=params["chunk_overlap"], embedder=params["embedder"],
                              out_name=f"trials/chunks_{trial.number:04d}.parquet")
        with open_store(MEMORY) as store:
            n_chunks = load_trial_collection(store, out["chunks_path"], params["embedder"], cache)
            metrics, _ = evaluate_collection(store, "trial", queries, show_progress=False,
                                             mode=params["retrieval_mode"], fusion=params["fusion"],
                                             sparse_weight=params["sparse_weight"])
        metrics.update(chunk_count=n_chunks, trial_seconds=time.perf_counter() - t0)
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        if on_trial:
            on_trial(trial.number, params, metrics)
        progress.update(1, ndcg_at_10=metrics[OBJECTIVE])
        return metrics[OBJECTIVE]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(STARTUP_TRIALS, max(n_trials // 3, 1)))
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage, study_name=study_name,
                                load_if_exists=storage is not None)
    finished = _settle_interrupted(study)
    if not study.trials and start:
        size = min(max(int(start["chunk_size"]), lo), hi)
        size = lo + (size - lo) // 16 * 16 if hi - lo >= 32 else size
        overlap = int(start["chunk_overlap"]) if int(start["chunk_overlap"]) in overlap_choices(size) else 0
        name = "chunk_overlap" if overlap_choices(size) == OVERLAPS else f"chunk_overlap_upto_{max(overlap_choices(size))}"
        mode = start.get("retrieval_mode") or DEFAULT_RETRIEVAL_MODE
        fusion = {"fusion": start.get("fusion") or DEFAULT_FUSION,
                  "sparse_weight": nearest_weight(start.get("sparse_weight"))} if mode == "hybrid" else {}
        study.enqueue_trial({"chunk_size": size, name: overlap, "embedder": embedders[0], "retrieval_mode": mode,
                             **fusion})
    progress = Progress("tune", n_trials, "trials", recorder=rec)
    progress.done = finished
    if finished < n_trials:
        study.optimize(objective, n_trials=n_trials - finished, timeout=timeout_s)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError("no tuning trial finished within the budget")
    best = study.best_trial
    best_params = trial_params(best.params)
    progress.finish(best_ndcg_at_10=round(best.value, 4), best=str(best_params))
    trials = [{"number": t.number, **trial_params(t.params), **t.user_attrs} for t in done]
    rec.metric(best_ndcg_at_10=best.value, trials_finished=len(done), best_trial=best.number)
    rec.json("tuning/best_params.json", best_params)
    rec.json("tuning/trials.json", trials)
    plots = _plots(study, workdir, rec)
    return {"best_params": best_params, "best_value": best.value, "trials": trials, "plots": plots}


def _settle_interrupted(study) -> int:
    """Mark trials a killed try left RUNNING as FAIL (they will not finish); return the finished count."""
    import optuna

    for t in study.trials:
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _plots(study, workdir: Path, rec: Recorder) -> list[str]:
    """Optuna's history and importance plots as PNGs (importance needs ≥ 2 trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out = []
    for name, plot in (("optimization_history", ovm.plot_optimization_history),
                       ("param_importances", ovm.plot_param_importances)):
        try:
            ax = plot(study)
        except (RuntimeError, ValueError, ZeroDivisionError) as err:  # too few distinct trials
            rec.tag(**{PLOT_TAG_PREFIX + name: f"not drawn: {err}"})
            continue
        path = workdir / f"{name}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        rec.artifact(path, "tuning")
        out.append(str(path))
    return out
