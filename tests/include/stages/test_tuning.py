"""The tuning study: valid values only, the live configuration first, and a resumable study."""

from __future__ import annotations

import optuna
import pytest

from ragtrail.core.settings import (
    DEFAULT_FUSION,
    DEFAULT_RETRIEVAL_MODE,
    DEFAULT_SPARSE_WEIGHT,
    SAMPLE_CORPUS,
)
from ragtrail.stages.ingest import ingest_source
from ragtrail.stages.tuning import (
    FUSIONS,
    OVERLAPS,
    RETRIEVAL_MODES,
    SPARSE_WEIGHTS,
    nearest_weight,
    overlap_choices,
    suggest,
    trial_params,
    tune_chunking,
)


@pytest.mark.parametrize("lo,hi", [(16, 64), (48, 128), (64, 254)])
def test_sampler_offers_only_valid_overlaps(lo, hi):
    """Every sampled overlap is below half the sampled chunk size: nothing to clamp afterwards."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1, n_startup_trials=3))
    modes = set()
    for _ in range(25):
        trial = study.ask()
        p = suggest(trial, lo, hi, ("all-MiniLM-L6-v2",))
        assert lo <= p["chunk_size"] <= hi
        assert p["chunk_overlap"] == 0 or p["chunk_overlap"] < p["chunk_size"] // 2
        assert trial_params(trial.params) == p
        # the mode is searched too; a fusion only for hybrid (the others keep the default, not a parameter)
        assert p["retrieval_mode"] in RETRIEVAL_MODES and p["fusion"] in FUSIONS
        assert ("fusion" in trial.params) == (p["retrieval_mode"] == "hybrid")
        # and the BM25 side's weight, likewise only for hybrid
        assert p["sparse_weight"] in SPARSE_WEIGHTS and ("sparse_weight" in trial.params) == (p["retrieval_mode"] == "hybrid")
        modes.add(p["retrieval_mode"])
        study.tell(trial, p["chunk_size"] / 1000)
    assert modes == set(RETRIEVAL_MODES)
    assert overlap_choices(254) == OVERLAPS and overlap_choices(48) == (0, 16)


def test_a_live_weight_between_the_searched_ones_starts_at_the_nearest_and_old_trials_keep_equal_weights():
    assert nearest_weight(None) == DEFAULT_SPARSE_WEIGHT in SPARSE_WEIGHTS and 0.5 in SPARSE_WEIGHTS
    assert (nearest_weight(0.33), nearest_weight(0.9), nearest_weight(0.0)) == (0.35, 0.5, 0.15)
    old = {"chunk_size": 64, "chunk_overlap": 0, "embedder": "m", "retrieval_mode": "hybrid", "fusion": "dbsf"}
    assert trial_params(old)["sparse_weight"] == 0.5  # scored before weights were searched: Qdrant's equal fusion
    dense = {k: v for k, v in old.items() if k != "fusion"} | {"retrieval_mode": "dense"}
    assert trial_params(dense)["sparse_weight"] == DEFAULT_SPARSE_WEIGHT


def test_study_starts_from_the_live_config_and_resumes(tmp_path):
    """A second call on the same storage runs only the trials still missing (as a retried task would)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for path in sorted((SAMPLE_CORPUS / "qdrant").glob("*.md"))[:3]:
        (corpus / path.name).write_text(path.read_text())
    docs = ingest_source(str(corpus), tmp_path / "ingest")
    names = sorted(p.name for p in corpus.iterdir())
    queries = [{"id": f"q{i}", "text": name.replace("-", " ").removesuffix(".md"), "relevant": {name: 1.0}}
               for i, name in enumerate(names)]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    kwargs = {"workdir": tmp_path, "chunk_size_range": (64, 254), "timeout_s": 600, "storage": storage,
              "start": {"chunk_size": 200, "chunk_overlap": 32}}
    first = tune_chunking(docs["docs_path"], queries, n_trials=1, **kwargs)
    assert [(t["chunk_size"], t["chunk_overlap"]) for t in first["trials"]] == [(192, 32)]
    assert (first["trials"][0]["retrieval_mode"], first["trials"][0]["fusion"]) == (DEFAULT_RETRIEVAL_MODE,
                                                                                     DEFAULT_FUSION)
    assert first["trials"][0]["sparse_weight"] == DEFAULT_SPARSE_WEIGHT
    second = tune_chunking(docs["docs_path"], queries, n_trials=2, **kwargs)
    assert [t["number"] for t in second["trials"]] == [0, 1]  # trial 0 was not run again
