"""The query layer against a real MLflow store filled by real pipeline runs: 3 versions and one failed run.

Every document is shorter than the smallest chunk size, so each document is exactly one chunk and one
vector: v1 has 2 documents, v2 3, v3 4. The answers below are worked out by hand from that.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import ingest, run_cli, write_corpus

from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP
from ragtrail.trail.queries import Trail, parse_time

PRODUCT = "trail-q"
DOCS = ["Airflow retries a failed task after a delay.", "MLflow nests child runs under a parent run.",
        "Qdrant aliases switch collections atomically.", "Chunk overlap keeps context between windows."]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """v1 (2 docs, chunk 200), v2 (3 docs, chunk 120), a failed v3 (chunk 400), v3 (4 docs, chunk 160)."""
    root = tmp_path_factory.mktemp("trail")
    runs = {}
    for version, n, chunk_size in (("v1", 2, 200), ("v2", 3, 120), ("v3-failed", 4, 400), ("v3", 4, 160)):
        corpus = write_corpus(root / version, {f"d{i}.md": DOCS[i] for i in range(n)})
        runs[version] = ingest({"source": str(corpus), "product": PRODUCT, "version": version[:2],
                                "chunk_size": chunk_size})
        runs[version]["source"] = str(corpus)
    assert [runs[v]["status"] for v in ("v1", "v2", "v3-failed", "v3")] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    return runs


@pytest.fixture(scope="module")
def trail():
    return Trail()


def ids(listing: dict) -> list[str]:
    return [r["run_id"] for r in listing["runs"]]


def test_runs_lists_and_searches(history, trail):
    """Newest first; filters by version, status, params/metrics expressions and time; ordered by a metric."""
    p = {v: s["parent_run_id"] for v, s in history.items()}
    everything = trail.runs(PRODUCT)
    assert ids(everything) == [p["v3"], p["v3-failed"], p["v2"], p["v1"]]
    assert [r["status"] for r in everything["runs"]] == ["FINISHED", "FAILED", "FINISHED", "FINISHED"]
    assert [r["metrics"].get("vector_count") for r in everything["runs"]] == [4, None, 3, 2]
    assert everything["runs"][0]["params"]["chunk_size"] == "160"
    assert ids(trail.runs(PRODUCT, version="v3")) == [p["v3"], p["v3-failed"]]
    assert ids(trail.runs(PRODUCT, status="failed")) == [p["v3-failed"]]
    assert ids(trail.runs(PRODUCT, where="metrics.vector_count >= 3")) == [p["v3"], p["v2"]]
    assert ids(trail.runs(PRODUCT, where="params.chunk_size = '120'")) == [p["v2"]]
    assert ids(trail.runs(PRODUCT, order_by="vector_count", ascending=True))[:3] == [p["v1"], p["v2"], p["v3"]]
    assert ids(trail.runs(PRODUCT, limit=2)) == [p["v3"], p["v3-failed"]]
    assert len(trail.runs(PRODUCT, since="1h")["runs"]) == 4
    assert trail.runs(PRODUCT, until="2000-01-01")["runs"] == []
    v2_start = trail.run(p["v2"])["start_time"]
    assert ids(trail.runs(PRODUCT, since=v2_start, until=trail.run(p["v3-failed"])["start_time"])) == [
        p["v3-failed"], p["v2"]]
    with pytest.raises(ValueError, match="bad filter"):
        trail.runs(PRODUCT, where="vector_count >> 3")
    with pytest.raises(LookupError, match="has no runs yet"):
        trail.runs("no-such-product")


def test_every_answer_links_to_mlflow(history, trail):
    """In MLflow's classic layout: 3.17 opens any page without ``workflowType`` (the experiment, the experiment
    list, compare) in its GenAI layout, an empty traces overview, whatever the experiment's kind tag says."""
    exp = history["v1"]["experiment_id"]
    listing = trail.runs(PRODUCT)
    assert listing["mlflow_url"] == f"http://127.0.0.1:5000/#/experiments/{exp}?workflowType=machine_learning"
    assert trail.summary()["mlflow_url"] == "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    assert trail.compare_url([exp], ["a", "b"]).endswith("&workflowType=machine_learning")
    assert all(p["mlflow_url"].endswith("?workflowType=machine_learning") for p in trail.products())
    assert all(r["mlflow_url"] == f"http://127.0.0.1:5000/#/experiments/{exp}/runs/{r['run_id']}?workflowType=machine_learning"
               for r in listing["runs"])
    product = next(p for p in trail.products() if p["product"] == PRODUCT)
    assert product["experiment_id"] == exp and product["experiment_name"].startswith(f"ragtrail - {PRODUCT} (")


def test_latest_reports_the_newest_finished_version_with_its_config_and_tasks(history, trail):
    latest = trail.latest(PRODUCT)
    assert latest["version"] == "v3" and latest["run"]["run_id"] == history["v3"]["parent_run_id"]
    assert latest["run"]["status"] == "FINISHED" and latest["run"]["metrics"]["vector_count"] == 4
    assert latest["config"] == {"chunk_size": 160, "chunk_overlap": DEFAULT_CHUNK_OVERLAP, "embedder": "all-MiniLM-L6-v2",
                                "batch_size": 64, "source": history["v3"]["source"], "dimension": 384}
    assert [t["task_id"] for t in latest["tasks"]] == ["preflight", "split", "ingest", "plan", "chunk", "dedupe", "embed",
                                                       "write", "index", "evaluate"]
    assert all(t["status"] == "FINISHED" for t in latest["tasks"])
    assert latest["tasks"][4]["metrics"]["chunk_count"] == 4 and latest["tasks"][8]["metrics"]["vector_count"] == 4
    assert latest["mlflow_url"].split("?")[0].endswith(history["v3"]["parent_run_id"]) and latest["running"] == []


def test_tasks_of_the_failed_run(history, trail):
    """Per-task breakdown: chunk failed with its error, nothing was embedded, index refused to publish.
    The mapped chunk task is one run (all its map indexes): its error names the failed map index and why."""
    tasks = trail.tasks(history["v3-failed"]["parent_run_id"])["tasks"]
    assert [(t["label"], t["status"]) for t in tasks] == [
        ("preflight", "FINISHED"), ("split", "FINISHED"), ("ingest", "FINISHED"), ("plan", "FINISHED"),
        ("chunk", "FAILED"), ("dedupe", "FINISHED"), ("write", "FINISHED"), ("index", "FAILED")]
    assert tasks[4]["error"].startswith("chunk[0]: ") and "chunk_size must be between 1 and 254" in tasks[4]["error"]
    assert "all 1 chunk batches failed" in tasks[7]["error"]
    assert tasks[2]["metrics"]["docs_parsed"] == 4
    with pytest.raises(LookupError):
        trail.tasks("0" * 32)


def test_trend_over_versions_and_time(history, trail):
    """By version: each version's newest FINISHED run (the failed v3 does not hide the good one)."""
    by_version = trail.trend(PRODUCT, "vector_count", by="version")
    assert [(p["x"], p["value"]) for p in by_version["points"]] == [("v1", 2), ("v2", 3), ("v3", 4)]
    assert by_version["points"][2]["run_id"] == history["v3"]["parent_run_id"]
    by_time = trail.trend(PRODUCT, "vector_count", by="time")
    assert [p["value"] for p in by_time["points"]] == [2, 3, None, 4]
    assert [p["status"] for p in by_time["points"]] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    status = trail.trend(PRODUCT, "status", by="time")
    assert [p["value"] for p in status["points"]] == ["FINISHED", "FINISHED", "FAILED", "FINISHED"]
    assert [p["value"] for p in trail.trend(PRODUCT, "chunk_count", by="version")["points"]] == [2, 3, 4]


def test_best_by_a_metric(history, trail):
    best = trail.best(PRODUCT, "vector_count")
    assert best["value"] == 4 and best["run"]["run_id"] == history["v3"]["parent_run_id"]
    worst = trail.best(PRODUCT, "vector_count", mode="min")
    assert worst["value"] == 2 and worst["run"]["version"] == "v1"
    with pytest.raises(LookupError):
        trail.best(PRODUCT, "no_such_metric")


def test_compare_side_by_side(history, trail):
    """Two runs: the params that differ, the metric deltas against the baseline (the first run)."""
    v1, v2 = history["v1"]["parent_run_id"], history["v2"]["parent_run_id"]
    cmp = trail.compare([v1, v2])
    assert cmp["baseline"] == v1 and [r["version"] for r in cmp["runs"]] == ["v1", "v2"]
    assert set(cmp["diff"]["params"]) == {"chunk_size", "source", "version"}
    assert cmp["params"]["chunk_size"] == ["200", "120"] and cmp["params"]["embedder"] == ["all-MiniLM-L6-v2"] * 2
    assert cmp["metrics"]["vector_count"] == [2, 3] and cmp["deltas"]["vector_count"] == [0, 1]
    assert "vector_count" in cmp["diff"]["metrics"] and "embedding_dimension" not in cmp["diff"]["metrics"]
    assert "compare-runs" in cmp["mlflow_url"] and v1 in cmp["mlflow_url"]
    last = trail.compare(product=PRODUCT, last=5)  # the newest run against (up to) five before it
    assert last["baseline"] == history["v3"]["parent_run_id"] and len(last["runs"]) == 4
    assert last["status"] == ["FINISHED", "FAILED", "FINISHED", "FINISHED"]
    assert last["deltas"]["vector_count"] == [0, None, -1, -2]


def test_summary_across_products(history, trail, mlflow_client):
    """Counts by status, success rate and mean duration, checked against the raw parent runs."""
    row = next(p for p in trail.summary()["products"] if p["product"] == PRODUCT)
    assert row["runs"] == 4 and row["by_status"] == {"FAILED": 1, "FINISHED": 3} and row["success_rate"] == 0.75
    parents = [mlflow_client.get_run(s["parent_run_id"]) for s in history.values()]
    expected = sum(r.data.metrics["duration_s"] for r in parents) / 4
    assert row["mean_duration_s"] == pytest.approx(expected, abs=1e-3)
    assert set(row["mean_stage_duration_s"]) == {"preflight", "split", "ingest", "plan", "chunk", "dedupe", "embed",
                                                 "write", "index", "evaluate"}
    assert row["latest"]["run_id"] == history["v3"]["parent_run_id"]
    only = trail.summary([PRODUCT])
    assert only["totals"]["runs"] == 4 and only["totals"]["success_rate"] == 0.75


def test_cli_answers_the_same_questions(history, trail):
    """`ragtrail latest|runs|trend|best|compare|summary`: readable tables, or the same data with --json."""
    proc = run_cli("latest", "--product", PRODUCT)
    assert proc.returncode == 0, proc.stderr
    assert f"{PRODUCT} v3: FINISHED" in proc.stdout and history["v3"]["parent_run_id"] in proc.stdout
    assert "chunk_size=160" in proc.stdout and "dimension=384" in proc.stdout
    as_json = json.loads(run_cli("latest", "--product", PRODUCT, "--json").stdout)
    assert as_json["run"]["run_id"] == trail.latest(PRODUCT)["run"]["run_id"]
    table = run_cli("compare", "--product", PRODUCT, "--last", "5").stdout
    assert "chunk_size *" in table and "vector_count *" in table and "compare-runs" in table
    trend = json.loads(run_cli("trend", "--product", PRODUCT, "--metric", "vector_count", "--json").stdout)
    assert [p["value"] for p in trend["points"]] == [2, 3, 4]
    runs = run_cli("runs", "--product", PRODUCT, "--status", "FAILED").stdout
    assert "FAILED" in runs and history["v3-failed"]["parent_run_id"] in runs
    best = json.loads(run_cli("best", "--product", PRODUCT, "--metric", "vector_count", "--min", "--json").stdout)
    assert best["value"] == 2
    assert PRODUCT in run_cli("summary").stdout
    missing = run_cli("latest", "--product", "no-such-product")
    assert missing.returncode == 1 and "has no runs yet" in missing.stderr and missing.stdout == ""


def test_parse_time_accepts_dates_and_ages():
    now = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
    assert parse_time("2024-05-01") == int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1000)
    assert parse_time("7d", now=now) == int(datetime(2024, 5, 3, 12, 0, tzinfo=UTC).timestamp() * 1000)
    assert parse_time("90m", now=now) == int(datetime(2024, 5, 10, 10, 30, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("last tuesday")
