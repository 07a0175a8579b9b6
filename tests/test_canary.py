"""The canary DAG (``rag_canary__<product>``, run with ``dag.test``) scores the live alias on the product's
questions: it passes on the version the gate promoted and fails — saying why, in the task and in an
MLflow run — when the live index is a degraded copy of it."""

from __future__ import annotations

import pytest
from conftest import REPO

from ragtrail.core.products import DEFAULT_PRODUCTS_FILE, load_products


@pytest.fixture()
def canary_dag(tmp_path, monkeypatch, handbook_run):
    """rag_canary__handbook from a products file that opts the handbook in (same id, so the same experiment)."""
    from airflow.dag_processing.dagbag import DagBag

    handbook = next(p for p in load_products(DEFAULT_PRODUCTS_FILE) if p.name == "handbook")
    path = tmp_path / "products.yml"
    path.write_text(f"products:\n  - {{id: {handbook.id}, name: handbook, source: {handbook.source}, "
                    "canary: {schedule: '@daily', tolerance: 0.05}}\n")
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("rag_canary__handbook")


def _run(dag) -> tuple[str, dict]:
    from ragtrail.cli.main import _sigterm_kept

    with _sigterm_kept():
        dag_run = dag.test()
    return str(dag_run.state), dag_run


def _latest_canary(mlflow_client, handbook_run):
    runs = mlflow_client.search_runs([handbook_run["experiment_id"]], "tags.`ragtrail.role` = 'canary'",
                                     order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0]


def _degraded_copy(store, source: str, target: str) -> None:
    """The same chunks with every vector moved to the next point: the index answers, but wrongly."""
    points = list(store.scroll(source, None, with_vectors=True))
    store.create(target, len(points[0].vector), store.metadata(source))
    vectors = [p.vector for p in points]
    for p, v in zip(points, vectors[1:] + vectors[:1], strict=True):
        p.vector = v
    store.upsert(target, points)


def test_the_canary_passes_on_the_promoted_build_and_fails_on_a_degraded_live_index(
        canary_dag, qdrant, mlflow_client, handbook_run):
    state, _ = _run(canary_dag)
    assert state == "success"
    good = _latest_canary(mlflow_client, handbook_run)
    assert good.data.tags["ragtrail.canary"] == "ok" and good.info.status == "FINISHED"
    assert good.data.metrics["ndcg_at_10"] == pytest.approx(handbook_run["eval"]["ndcg_at_10"], abs=0.05)

    with qdrant() as store:
        live = store.alias_target("handbook")
        _degraded_copy(store, live, "handbook__degraded")
        store.point_alias("handbook", "handbook__degraded")
    try:
        state, _ = _run(canary_dag)
    finally:
        with qdrant() as store:
            store.point_alias("handbook", live)
            store.delete_collection("handbook__degraded")
    assert state == "failed"
    bad = _latest_canary(mlflow_client, handbook_run)
    assert bad.info.status == "FAILED" and bad.data.tags["ragtrail.canary"] == "failed"
    assert "dropped" in bad.data.tags["ragtrail.canary_reason"] and "last promoted build" in bad.data.tags["ragtrail.canary_reason"]
    assert bad.data.metrics["ndcg_drop_vs_baseline"] > 0.05
    assert bad.data.tags["ragtrail.live_collection"] == "handbook__degraded"
    from ragtrail.trail.queries import Trail
    from ragtrail_airflow.page import render

    page = render(Trail(client=mlflow_client), product="handbook")
    assert "live nDCG@10 (canary)" in page and bad.info.run_id in page  # the quality trend, each check linked
