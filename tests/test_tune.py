"""rag_tune: an Optuna study on a small slice of the sample corpus, every trial a nested MLflow run."""

from __future__ import annotations

import json
import shutil

from conftest import dump

from ragtrail.core.settings import DAGS_FOLDER, SAMPLE_CORPUS
from ragtrail.stages.evaluation import SAMPLE_QUERIES

SUBSET = ("qdrant", "ragtrail")


def run_dag(dag_id: str, conf: dict) -> dict:
    """Run a DAG in-process (``dag.test``) and return its roll-up summary."""
    from airflow.dag_processing.dagbag import DagBag

    from ragtrail.cli.main import _read_summary

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag(dag_id).test(run_conf=conf)
    return _read_summary(dag_run.dag_id, dag_run.run_id)


def test_small_study_logs_nested_trials_and_a_best_configuration(tmp_path, mlflow_client):
    """Two trials on 8 documents: FINISHED, two nested trial runs with params and nDCG, best params and plots."""
    corpus = tmp_path / "corpus"
    for part in SUBSET:
        shutil.copytree(SAMPLE_CORPUS / part, corpus / part)
    rows = [json.loads(line) for line in SAMPLE_QUERIES.read_text().splitlines()]
    kept = [r for r in rows if all(d.split("/")[0] in SUBSET for d in r["relevant"])]
    assert len(kept) >= 5
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in kept))

    summary = run_dag("rag_tune", {"source": str(corpus), "product": "tune", "eval_queries": str(queries),
                                   "min_chunk_size": 48, "max_chunk_size": 128, "n_trials": 2, "timeout_s": 600})
    assert summary["status"] == "FINISHED", dump(summary)
    assert summary["tasks"] == {"tune": "FINISHED", "build_best": "SKIPPED"}
    (tune,) = mlflow_client.search_runs([summary["experiment_id"]],
                                        f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
    trials = mlflow_client.search_runs([summary["experiment_id"]], f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    assert sorted(t.info.run_name for t in trials) == ["trial 0", "trial 1"]
    for t in trials:
        assert t.info.status == "FINISHED" and t.data.tags["ragtrail.role"] == "trial"
        assert 48 <= int(t.data.params["chunk_size"]) <= 128 and "chunk_overlap" in t.data.params
        assert 0 < t.data.metrics["ndcg_at_10"] <= 1 and t.data.metrics["chunk_count"] > 0
    best = json.loads(open(mlflow_client.download_artifacts(tune.info.run_id, "tuning/best_params.json",
                                                            str(tmp_path))).read())
    assert tune.data.metrics["best_ndcg_at_10"] == max(t.data.metrics["ndcg_at_10"] for t in trials)
    assert set(best) == {"chunk_size", "chunk_overlap", "embedder", "retrieval_mode", "fusion", "sparse_weight"}
    assert best["embedder"] == "all-MiniLM-L6-v2" and best["retrieval_mode"] in ("dense", "sparse", "hybrid")
    for t in trials:  # each trial records the mode (and fusion) it was scored in
        assert t.data.params["retrieval_mode"] in ("dense", "sparse", "hybrid") and "fusion" in t.data.params
    artifacts = {a.path for a in mlflow_client.list_artifacts(tune.info.run_id, "tuning")}
    assert "tuning/optimization_history.png" in artifacts, artifacts


def test_build_best_triggers_rag_ingest_with_the_best_configuration(tmp_path):
    """build_best on: the TriggerDagRunOperator in the graph queues a rag_ingest run whose conf is the best
    configuration tune found (version ``version``), and the tuning run still rolls up FINISHED."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE_CORPUS / "qdrant", corpus / "qdrant")
    summary = run_dag("rag_tune", {"source": str(corpus), "product": "tunebuild", "version": "tuned-x",
                                   "eval_queries": str(SAMPLE_QUERIES), "build_best": True, "min_chunk_size": 64, "max_chunk_size": 64, "n_trials": 1})
    assert summary["status"] == "FINISHED", dump(summary)
    assert summary["tasks"] == {"tune": "FINISHED", "build_best": "FINISHED"}
    with create_session() as session:
        triggered = [r for r in session.query(DagRun).filter(DagRun.dag_id == "rag_ingest")
                     if (r.conf or {}).get("product") == "tunebuild"]
    assert len(triggered) == 1, [r.conf for r in triggered]
    conf = triggered[0].conf
    assert conf["version"] == "tuned-x" and conf["source"] == str(corpus) and conf["chunk_size"] == 64
    assert set(conf) >= {"chunk_overlap", "embedder", "eval_queries", "retrieval_mode", "fusion", "sparse_weight"}
