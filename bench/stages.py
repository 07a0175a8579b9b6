"""Per-stage throughput of one pipeline run, read back from its MLflow trail (the numbers docs/scaling.md uses).

For the first ``bench`` run in a data folder: each task's wall time (its child run's start → end) and the
stage's own counters, as rates per task: documents/s (ingest), chunks/s (chunk), embeddings/s (embed: over the
stage's encode time and over the task's wall time), upserts/s (index). Run in a child process with
``RAGTRAIL_HOME`` set (``python bench/stages.py``), so the bench's own process never imports MLflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _collect() -> dict:
    from ragtrail.core.products import experiment_name
    from ragtrail.trail.client import get_client

    c = get_client()
    exp = c.get_experiment_by_name(experiment_name("bench"))
    runs = c.search_runs([exp.experiment_id], "tags.`ragtrail.role` = 'task'", max_results=5000)
    first = min({r.data.tags["mlflow.parentRunId"] for r in runs}, key=lambda p: c.get_run(p).info.start_time)
    out: dict[str, dict] = {}
    for r in runs:
        if r.data.tags["mlflow.parentRunId"] != first or r.info.end_time is None:
            continue
        stage = r.data.tags["airflow.task_id"]
        agg = out.setdefault(stage, {"tasks": 0, "wall_s": 0.0})
        agg["tasks"] += 1
        agg["wall_s"] += (r.info.end_time - r.info.start_time) / 1000
        for key in ("docs_parsed", "bytes_in", "chunk_count", "total_tokens", "embedding_count",
                    "processing_time_seconds", "points_upserted"):
            if key in r.data.metrics:
                agg[key] = agg.get(key, 0) + r.data.metrics[key]
    return out


def rates(stages: dict) -> dict:
    """Stage sums → per-task rates (a task runs on one worker slot)."""
    def per(stage: str, key: str, over: str = "wall_s") -> float | None:
        s = stages.get(stage) or {}
        return round(s[key] / s[over], 2) if s.get(key) and s.get(over) else None

    return {"ingest_docs_per_s": per("ingest", "docs_parsed"), "chunks_per_s": per("chunk", "chunk_count"),
            "embed_per_s_encode": per("embed", "embedding_count", "processing_time_seconds"),
            "embed_per_s_task": per("embed", "embedding_count"), "index_upserts_per_s": per("index", "points_upserted"),
            "stages": stages}


def stage_rates(home: Path) -> dict:
    """Measure in a child process (``RAGTRAIL_HOME=home``)."""
    out = subprocess.run([sys.executable, str(Path(__file__))], env={**os.environ, "RAGTRAIL_HOME": str(home)},
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(rates(_collect())))
