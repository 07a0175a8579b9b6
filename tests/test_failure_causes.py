"""A failed stage says why, in one line a person can act on: on the terminal of `ragtrail ingest`, in the
parent MLflow run's reasons and on the task's own MLflow run (issue 24 item 4)."""

from __future__ import annotations

import json

from conftest import child_runs_of, run_cli, write_corpus

MAP_LIMIT = ("6 batches exceed Airflow's map limit (max_map_length 5): raise docs_per_batch (--docs-per-batch) "
             "or AIRFLOW__CORE__MAX_MAP_LENGTH")


def test_a_plan_past_airflows_map_limit_says_so_everywhere(tmp_path, mlflow_client):
    """Airflow refuses a list longer than [core] max_map_length after the task returned it (the cause was
    only in Airflow's log: "plan: failed"). Six one-line documents at one per batch against a limit of 5."""
    corpus = write_corpus(tmp_path / "c", {f"d{i}.txt": f"document number {i}" for i in range(6)})
    proc = run_cli("ingest", "--source", str(corpus), "--product", "maplimit", "--docs-per-batch", "1", "--json",
                   env={"AIRFLOW__CORE__MAX_MAP_LENGTH": "5", "RAGTRAIL_TASK_RETRIES": "1",
                        "RAGTRAIL_RETRY_DELAY_S": "1"})
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["reasons"][0] == f"plan: failed ({MAP_LIMIT})", (summary, proc.stderr[-3000:])
    assert f"ragtrail ingest: pipeline FAILED: plan: failed ({MAP_LIMIT})" in proc.stderr
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert MAP_LIMIT in parent.data.tags["ragtrail.reasons"]
    plans = [r for r in child_runs_of(mlflow_client, summary) if r.data.tags["airflow.task_id"] == "plan"]
    assert len(plans) == 1, "a plan that cannot change on its own is not retried"
    assert plans[0].info.status == "FAILED" and plans[0].data.tags["ragtrail.error"] == MAP_LIMIT
