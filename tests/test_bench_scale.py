"""bench/scale.py opens each task instance's MLflow run as the Airflow operator does: a mapped task's map
indexes share one run, so the MLflow runs it counts per DAG run do not grow with the corpus."""

from __future__ import annotations

import sys
import uuid

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import scale  # noqa: E402


def test_map_indexes_of_a_bench_task_share_one_mlflow_run(mlflow_client):
    from ragtrail.trail.names import RUN_TAG

    run_id = f"bench_{uuid.uuid4().hex}"
    spec = {"run_id": run_id, "params": {"product": "bench-scale-tests", "version": "v1"}}
    ids = {}
    for task, map_index in (("ingest", -1), ("chunk", 0), ("chunk", 1), ("chunk", 2)):
        with scale.task_run(task, map_index, spec) as run:
            run.recorder.metric(chunk_count=10 + map_index)
            ids[(task, map_index)] = run.mlflow_run_id

    assert len({ids[("chunk", i)] for i in range(3)}) == 1  # one run for the three map indexes
    assert ids[("ingest", -1)] != ids[("chunk", 0)]
    exps = [e.experiment_id for e in mlflow_client.search_experiments()]
    runs = mlflow_client.search_runs(exps, f"tags.`{RUN_TAG}` = '{run_id}'")
    assert sorted(r.info.run_name for r in runs if r.info.run_id in ids.values()) == ["chunk", "ingest"]
    assert len(runs) == 3  # the DAG run's parent, ingest, chunk
