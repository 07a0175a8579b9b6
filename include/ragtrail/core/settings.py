"""Where a ragtrail installation keeps its state, and how to reach its services.

Every local run keeps all of its state under one data folder, ``RAGTRAIL_HOME`` (default ``.data/``
in the repository): the Airflow home, the MLflow store and artifacts, the Qdrant local store and the
per-run work folders. Explicit environment variables win over these defaults.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ragtrail.core import env

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_CORPUS = REPO_ROOT / "include" / "sample_corpus"
DAGS_FOLDER = REPO_ROOT / "dags"

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_CHUNK_SIZE = 254
DEFAULT_CHUNK_OVERLAP = 0
DEFAULT_BATCH_SIZE = 64
DEFAULT_EMBED_BACKEND = "onnx-int8"
# How a version answers (see docs/performance.md, "Hybrid search"): dense, sparse (BM25) or hybrid (both, fused).
DEFAULT_RETRIEVAL_MODE = "hybrid"
DEFAULT_FUSION = "dbsf"
# The BM25 side's share of a hybrid score (the dense side's: 1 - it). 0.25 beat dense by >= +0.022 MRR@10 and
# nDCG@10 on all three labelled sets (FAQs, PostgreSQL manual, sample corpus), where 0.5 — Qdrant's own equal
# weighting — tied dense on the FAQs (docs/performance.md, "Hybrid search"; bench/hybrid_weights.py).
DEFAULT_SPARSE_WEIGHT = 0.25
# A version built before the weight existed was judged with Qdrant's own, equal-weight fusion: it keeps it.
LEGACY_SPARSE_WEIGHT = 0.5
EXPERIMENT_PREFIX_DEFAULT = env.EXPERIMENT_PREFIX.default


def _default_home() -> Path:
    """``<repository>/.data`` in a checkout; ``~/.ragtrail`` when installed from a wheel (no repository)."""
    return REPO_ROOT / ".data" if (REPO_ROOT / "pyproject.toml").exists() else Path.home() / ".ragtrail"


def ragtrail_home() -> Path:
    """Return the data folder, creating it on first use."""
    home = (env.HOME.get() or _default_home()).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one process; build it with :func:`load`."""

    home: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    mlflow_ui_url: str
    qdrant_path: Path  # the local store; where the store is at all: ragtrail.store.resolve_store
    work_root: Path
    experiment_prefix: str

    @property
    def mlflow_server_command(self) -> str:
        """The command that serves the MLflow UI over this store."""
        mlflow_bin = Path(sys.executable).parent / "mlflow"
        return (
            f"{mlflow_bin if mlflow_bin.exists() else 'mlflow'} ui --backend-store-uri '{self.mlflow_tracking_uri}' "
            f"--default-artifact-root '{self.mlflow_artifact_root}' --host 127.0.0.1 --port 5000"
        )


def load() -> Settings:
    """Resolve settings from the environment, falling back to the data folder."""
    home = ragtrail_home()
    mlflow_dir = home / "mlflow"
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    prefix = env.EXPERIMENT_PREFIX.get()
    # A tracking server stores artifacts itself (--serve-artifacts): a worker's local folder would be
    # invisible to the server and to every other worker.
    remote = tracking_uri.startswith(("http://", "https://"))
    default_root = f"mlflow-artifacts:/{prefix}" if remote else str(mlflow_dir / "artifacts")
    return Settings(
        home=home,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_root=env.MLFLOW_ARTIFACT_ROOT.get() or default_root,
        mlflow_ui_url=env.MLFLOW_UI_URL.get().rstrip("/"),
        qdrant_path=env.QDRANT_PATH.get() or home / "qdrant",
        work_root=env.WORK_DIR.get() or home / "work",
        experiment_prefix=prefix,
    )


def run_workdir(dag_id: str, run_id: str) -> Path:
    """The work folder of one pipeline run, where stages hand files to each other."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in run_id)
    path = load().work_root / dag_id / safe
    path.mkdir(parents=True, exist_ok=True)
    return path
