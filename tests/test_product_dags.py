"""The product DAGs as shipped run on their schedule: with their own defaults, against the state `make run` leaves.

`make run` (and rag_ingest's form) build ``handbook v1`` with the run spec's defaults; the products file's
``handbook`` once declared other chunking under the same version, so ``rag_ingest__handbook`` failed in
``plan`` on every scheduled run. A products entry that contradicts what its version was built with is now
the products DAG file's import error, naming the fix, when Airflow parses it.
"""

from __future__ import annotations

import pytest
from conftest import REPO

from ragtrail.cli.main import run_ingest
from ragtrail.core.products import DEFAULT_PRODUCTS_FILE, load_products


@pytest.fixture()
def shipped_products(monkeypatch):
    monkeypatch.delenv("RAGTRAIL_PRODUCTS_FILE", raising=False)
    return load_products(DEFAULT_PRODUCTS_FILE)


def test_every_shipped_product_dag_runs_green_with_its_own_defaults_after_make_run(handbook_run, shipped_products,
                                                                                  mlflow_client):
    """handbook_run is `make run`'s build (the sample corpus as handbook v1, the spec's defaults); each product
    DAG then runs as its schedule would start it: no conf, its own params. handbook's is a re-index of the live
    v1, and the gate and the registered version say so (not "no live version")."""
    assert [p.name for p in shipped_products] == ["handbook"]
    for product in shipped_products:
        summary = run_ingest({}, dag_id=product.dag_id)
        assert summary["status"] == "FINISHED" and summary["dag_run_state"] == "success", summary
        assert summary["version"] == product.version
    assert summary["collection"] == handbook_run["collection"] == "handbook__v1"
    assert summary["gate"] == "passed" and summary["live_collection"] == "handbook__v1"
    assert "re-index of the live version handbook__v1" in summary["gate_reason"], summary["gate_reason"]
    version = mlflow_client.get_model_version("ragtrail-handbook", str(summary["model_version"]))
    assert "no live version" not in version.description and "re-index of the live version" in version.description


def _import_errors(products_file, monkeypatch) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(products_file))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    return {**bag.import_errors, "dag_ids": sorted(bag.dag_ids)}


def test_an_entry_that_contradicts_its_built_version_is_an_import_error_naming_the_fix(handbook_run, shipped_products,
                                                                                       tmp_path, monkeypatch):
    """The old shipped entry (handbook v1 with 200/32) against the v1 `make run` built: the Airflow UI shows the
    products file's import error with the fix; bumping the version (the fix) parses into the product's DAG."""
    handbook = shipped_products[0]
    entry = (f"products:\n  - {{id: {handbook.id}, name: handbook, source: {handbook.source}, version: %s, "
             "schedule: '@weekly', chunking: {chunk_size: 200, chunk_overlap: 32}}\n")
    clashing = tmp_path / "clashing.yml"
    clashing.write_text(entry % "v1")
    found = _import_errors(clashing, monkeypatch)
    message = found.get(str(REPO / "dags" / "rag_products.py"), "")
    assert "product handbook version v1 was built with chunk_size=254, chunk_overlap=0" in message, found
    assert "asks for chunk_size=200, chunk_overlap=32" in message and "bump its version (e.g. version: v2)" in message
    assert "rag_ingest__handbook" not in found["dag_ids"]

    bumped = tmp_path / "bumped.yml"
    bumped.write_text(entry % "v2")
    assert _import_errors(bumped, monkeypatch) == {"dag_ids": [
        "rag_ingest", "rag_ingest__handbook", "rag_registry_sync", "rag_tune"]}


def test_a_build_held_for_approval_keeps_the_gates_own_verdict(handbook_run, settings):
    """Approval "always" holds the alias for a person; the gate still says what it found (it used to be asked
    with promote off: "not_requested — promote is off" while promote was on)."""
    from ragtrail.stages.evaluation import SAMPLE_QUERIES
    from ragtrail.stages.gate import evaluate_and_promote

    decision = evaluate_and_promote(location=settings.qdrant_path, product="handbook", version="v1",
                                    queries_path=SAMPLE_QUERIES, promote=True, hold=True)
    assert decision["gate"] == "passed" and decision["promoted"] is False and decision["live"] == "handbook__v1"
    assert "promote is off" not in decision["reason"]
    assert "re-index of the live version handbook__v1" in decision["reason"]
