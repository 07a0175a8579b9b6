"""A failed stage says why, in one line a person can act on: on the terminal of `ragtrail ingest`, in the
parent MLflow run's reasons and on the task's own MLflow run (issue 24 item 4)."""

from __future__ import annotations

import json

from conftest import child_runs_of, run_cli, write_corpus


def test_a_plan_past_airflows_map_limit_grows_its_batches(tmp_path, mlflow_client):
    """Airflow refuses a list longer than [core] max_map_length (it failed "plan: failed", the cause only in
    Airflow's log): plan and dedupe now size their batches to the limit and say so. Six one-line documents at
    one per batch against a limit of 5 finish, in 3 chunk tasks of 2 documents."""
    corpus = write_corpus(tmp_path / "c", {f"d{i}.txt": f"document number {i}" for i in range(6)})
    proc = run_cli("ingest", "--source", str(corpus), "--product", "maplimit", "--docs-per-batch", "1",
                   "--texts-per-batch", "1", "--json",
                   env={"AIRFLOW__CORE__MAX_MAP_LENGTH": "5", "RAGTRAIL_TASK_RETRIES": "1",
                        "RAGTRAIL_RETRY_DELAY_S": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["status"] == "FINISHED" and summary["docs"] == 6, summary
    runs = {r.data.tags["airflow.task_id"]: r for r in child_runs_of(mlflow_client, summary)}
    assert runs["plan"].data.params["docs_per_batch_used"] == "2"
    assert runs["dedupe"].data.params["texts_per_batch_used"] == "2"
    assert runs["plan"].data.metrics["batches"] == 3 and runs["dedupe"].data.metrics["embed_batches"] == 3
