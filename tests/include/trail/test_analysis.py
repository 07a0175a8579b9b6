"""The arithmetic behind trend, compare and summary, on hand-made runs."""

from __future__ import annotations

import pytest

from ragtrail.trail.analysis import product_summary, side_by_side, totals, trend_points


def run(run_id: str, version: str, status: str, vectors: float | None, duration: float | None = 10.0,
        chunk_size: str = "200", mlflow_status: str | None = None) -> dict:
    return {"run_id": run_id, "experiment_id": "1", "product": "p", "version": version, "status": status,
            "mlflow_status": mlflow_status or ("FINISHED" if status == "FINISHED" else "FAILED"),
            "start_time": f"2024-05-0{run_id[-1]}T00:00:00.000+00:00", "duration_s": duration,
            "params": {"chunk_size": chunk_size, "embedder": "m"},
            "metrics": {} if vectors is None else {"vector_count": vectors}, "mlflow_url": f"u/{run_id}"}


OLDEST_FIRST = [run("r1", "v1", "FINISHED", 10), run("r2", "v1", "FINISHED", 12), run("r3", "v2", "FAILED", None),
                run("r4", "v2", "PARTIAL", 7), run("r5", "v3", "FAILED", None)]


def test_trend_by_version_takes_each_versions_newest_finished_run():
    """v1 → its newer FINISHED run (12); v2 has none FINISHED → its newest run (PARTIAL, 7); v3 only failed."""
    points = trend_points(OLDEST_FIRST, "vector_count", by="version")
    assert [(p["x"], p["value"], p["run_id"]) for p in points] == [("v1", 12, "r2"), ("v2", 7, "r4"), ("v3", None, "r5")]
    assert [p["value"] for p in trend_points(OLDEST_FIRST, "vector_count", by="time")] == [10, 12, None, 7, None]
    assert [p["value"] for p in trend_points(OLDEST_FIRST, "status", by="version")] == ["FINISHED", "PARTIAL", "FAILED"]
    with pytest.raises(ValueError):
        trend_points(OLDEST_FIRST, "vector_count", by="week")


def test_side_by_side_marks_differences_and_deltas_from_the_baseline():
    cmp = side_by_side([run("r2", "v1", "FINISHED", 12), run("r4", "v2", "PARTIAL", 7, chunk_size="120"),
                        run("r3", "v2", "FAILED", None)])
    assert cmp["baseline"] == "r2" and cmp["status"] == ["FINISHED", "PARTIAL", "FAILED"]
    assert cmp["diff"] == {"params": ["chunk_size"], "metrics": ["vector_count"]}
    assert cmp["metrics"]["vector_count"] == [12, 7, None] and cmp["deltas"]["vector_count"] == [0, -5, None]
    with pytest.raises(LookupError):
        side_by_side(OLDEST_FIRST[:1])


def test_summary_counts_rates_and_means():
    """5 runs, 2 FINISHED of 5 ended → 0.4; a run in flight is counted but not in the rate or the means."""
    newest_first = list(reversed(OLDEST_FIRST)) + [run("r6", "v3", "RUNNING", None, None, mlflow_status="RUNNING")]
    newest_first.insert(0, newest_first.pop())  # the running one is the newest
    row = product_summary(newest_first, {"embed": [2.0, 4.0], "ingest": [1.0], "custom": [9.0]})
    assert row["runs"] == 6 and row["by_status"] == {"FAILED": 2, "FINISHED": 2, "PARTIAL": 1, "RUNNING": 1}
    assert row["success_rate"] == 0.4 and row["mean_duration_s"] == 10.0
    assert list(row["mean_stage_duration_s"].items()) == [("ingest", 1.0), ("embed", 3.0), ("custom", 9.0)]
    assert row["latest"]["run_id"] == "r5"  # the newest run that ended
    both = totals([row, {**row, "by_status": {"FINISHED": 1}, "runs": 1}])
    assert both["runs"] == 7 and both["by_status"]["FINISHED"] == 3 and both["success_rate"] == round(3 / 6, 4)


def test_side_by_side_compares_numbers_as_numbers():
    """MLflow keeps params as text: a run triggered from the form logs ``24``, one from the CLI ``24.0``;
    the same value, not a difference. Text that differs still does, and so do different numbers."""
    a, b = run("r1", "v1", "FINISHED", 24), run("r2", "v1", "FINISHED", 24.0, chunk_size="200.0")
    a["params"].update(max_file_mb="24", min_ndcg="0", embedder="all-MiniLM-L6-v2")
    b["params"].update(max_file_mb="24.0", min_ndcg="0.0", embedder="all-MiniLM-L6-v2 ")
    assert side_by_side([a, b])["diff"] == {"params": ["embedder"], "metrics": []}
    c = run("r3", "v1", "FINISHED", 25, chunk_size="nan")
    c["params"].update(max_file_mb="24.5", min_ndcg="0", embedder="all-MiniLM-L6-v2")
    assert side_by_side([a, c])["diff"] == {"params": ["chunk_size", "max_file_mb"],
                                            "metrics": ["vector_count"]}
