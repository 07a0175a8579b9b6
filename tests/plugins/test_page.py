"""The metrics page renders through autoescaped templates: MLflow values are text, the plots are SVG
without script, and the only script is the frame-escape for links."""

from __future__ import annotations

import re

from ragtrail_airflow.page import render, render_dag_run

EVIL = '<img src=x onerror="alert(1)">'


def _run(i: int, status: str, version: str) -> dict:
    return {"run_id": f"r{i}abcdef", "version": version, "status": status, "mlflow_status": "FINISHED",
            "start_time": f"2026-01-0{i + 1}T00:00:00", "duration_s": 10.0 + i, "mlflow_url": f"http://mlflow/#/r{i}",
            "metrics": {"vector_count": 100.0 + i, "chunk_count": 50.0, "embeddings_per_second": 12.5,
                        "duration_s": 10.0 + i},
            "params": {"chunk_size": "254", "chunk_overlap": "0", "embedder": EVIL}, "reasons": [EVIL],
            "warnings": [], "trail": "complete", "missing_runs": [], "dag_id": "rag_ingest",
            "airflow_run_id": "manual__2026/01", "experiment_id": "1", "name": "pipeline", "product": "docs"}


class Trail:
    """The shapes ``ragtrail.trail.queries.Trail`` answers with (that class is tested against a real store)."""

    ui_url = "http://mlflow"

    def __init__(self):
        self.done = [_run(1, "FINISHED", EVIL), _run(0, "PARTIAL", "v1")]

    def products(self):
        return [{"product": "docs", "mlflow_url": "http://mlflow/#/experiments/1"}]

    def runs(self, product, limit):
        return {"runs": self.done}

    def tasks(self, run_id):
        return {"tasks": [{"label": "chunk [0]", "status": "FAILED", "try_number": 2, "duration_s": 1.5,
                           "error": EVIL, "mlflow_url": "http://mlflow/#/t", "task_id": "chunk"}]}

    def compare_runs(self, runs):
        return {"runs": runs, "status": [r["status"] for r in runs], "mlflow_url": "http://mlflow/#/compare",
                "metrics": {"vector_count": [101.0, 100.0]}, "params": {"embedder": [EVIL, "m"]},
                "diff": {"metrics": ["vector_count"], "params": ["embedder"]}}

    def experiment_url(self, experiment_id):
        return f"http://mlflow/#/experiments/{experiment_id}"


def test_metrics_page_escapes_mlflow_values_and_draws_svg_without_script():
    html = render(Trail(), product="docs")
    assert EVIL not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert html.count("<script>") == 1 and "window.top.document" in html  # only the frame-escape script
    plots = re.findall(r'<svg class="trend" data-metric="(\w+)" data-points="(\d+)"', html)
    assert plots == [("vector_count", "2"), ("chunk_count", "2"), ("embeddings_per_second", "2"),
                     ("duration_s", "2"), ("ndcg_at_10", "0"), ("status", "2")]
    assert html.count('<circle class="point"') == 10 and html.count('<tr class="run">') == 2
    assert 'href="/dags/rag_ingest/runs/manual__2026%2F01" target="_top" data-out="1"' in html
    assert 'href="http://mlflow/#/r1" target="_blank" data-out="1" rel="noopener"' in html
    assert '<a href="?product=docs">docs</a>' in html  # in-page links stay in the frame


def test_dag_run_tab_and_its_problem_message_are_escaped():
    t = Trail()
    html = render_dag_run(t, t.done[0])
    assert EVIL not in html and "Open the pipeline run in MLflow" in html and "chunk [0]" in html
    assert EVIL not in render_dag_run(t, None, EVIL)


def test_metrics_page_lists_ndcg_per_retrieval_mode():
    """The evaluation's comparison of modes (copied to the parent run by the roll-up) is a column per mode."""
    t = Trail()
    t.done[0]["metrics"].update({"ndcg_at_10.dense": 0.8130, "ndcg_at_10.sparse": 0.6657, "ndcg_at_10.hybrid": 0.7776})
    html = render(t, product="docs")
    for mode in ("dense", "sparse", "hybrid"):
        assert f"<th>nDCG {mode}</th>" in html
    latest = html.split('<table class="latest">')[1].split("</table>")[0]
    cells = re.findall(r'<td class="n">([^<]*)</td>', latest)
    assert cells[6:9] == ["0.813", "0.666", "0.778"], cells  # after docs, chunks, vectors, nDCG, recall, p95
