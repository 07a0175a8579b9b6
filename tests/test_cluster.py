"""Scale-out as docker compose runs it, on loopback: rag_ingest triggered through the REST API spreads its
mapped tasks over two Celery workers (PostgreSQL, Redis) that share no folder, hands stage files over
through the work store in S3, tracks into an MLflow server whose artifacts land in S3, and reads its
source from S3. The local-mode Qdrant store lives in worker1's home: the store queue pins the tasks
that open it there."""

from __future__ import annotations

import json
import re
import time

import pytest
from conftest import put_objects
from live_cluster import LiveCluster, services_missing

from ragtrail.store import open_store

pytestmark = [pytest.mark.services, pytest.mark.slow]

# 12 one-chunk documents: 4 per ingest shard → 3 ingest tasks; 2 per chunk task → 6 chunk tasks; 4 texts per embed
# task → 3 embed tasks.
DOCS = {f"cluster/doc{i:02d}.md": f"Note {i} on scaling out: worker {i % 2} handles batch {i // 2} of the corpus."
        for i in range(12)}
CONF = {"product": "cluster", "docs_per_shard": 4, "docs_per_batch": 2, "texts_per_batch": 4}
BUCKET, ARTIFACTS, WORK = "ragtrail-cluster-src", "ragtrail-cluster-mlflow", "ragtrail-cluster-work"
STORE_TASKS = {"split", "plan", "write", "index", "evaluate"}


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    why = services_missing()
    if why:
        pytest.skip(why)
    put_objects(s3_server.client, BUCKET, DOCS)
    s3_server.client.create_bucket(Bucket=ARTIFACTS)
    s3_server.client.create_bucket(Bucket=WORK)
    live = LiveCluster(tmp_path_factory.mktemp("cluster"), s3_server.endpoint,
                       (s3_server.access_key, s3_server.secret), ARTIFACTS, work_url=f"s3://{WORK}/runs")
    try:
        live.start("rag_ingest")
        yield live
    finally:
        live.stop()


def _ran_by(log: str) -> set[tuple[str, int]]:
    """(task_id, map_index) of the tasks a Celery worker's log says it executed."""
    found = set()
    for line in log.splitlines():
        if "Executing workload" in line:
            task = re.search(r"task_id='(\w+)'", line)
            index = re.search(r"map_index=(-?\d+)", line)
            if task and index:
                found.add((task.group(1), int(index.group(1))))
    return found


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_mapped_tasks_spread_over_two_celery_workers(cluster, s3_server):
    """Both workers run mapped tasks; the index holds exactly the corpus; MLflow (server) has one FINISHED
    child per task and map index under one parent; artifacts are objects in S3."""
    from mlflow.tracking import MlflowClient

    t0 = time.monotonic()
    run_id = cluster.trigger("rag_ingest", {**CONF, "source": f"s3://{BUCKET}/cluster"})
    assert cluster.wait("rag_ingest", run_id) == "success", cluster.logs()
    print(f"\ncluster run took {time.monotonic() - t0:.0f}s")

    tis = cluster.task_instances("rag_ingest", run_id)
    # approve skips itself: no approval was asked for
    assert all(ti["state"] == ("skipped" if ti["task_id"] == "approve" else "success") for ti in tis), tis
    keys = {(ti["task_id"], ti["map_index"]) for ti in tis}
    assert {m for t, m in keys if t == "ingest"} == set(range(3))
    assert {m for t, m in keys if t == "chunk"} == set(range(6))
    assert {m for t, m in keys if t == "embed"} == set(range(3))
    assert all(ti["pool"] == "ragtrail_cpu" for ti in tis if ti["task_id"] in ("ingest", "chunk", "embed"))

    ran = {name: _ran_by(cluster.worker_log(name)) for name in ("worker1", "worker2")}
    mapped = {n: {k for k in r if k[1] >= 0} for n, r in ran.items()}
    print("mapped tasks per worker:", {n: sorted(r) for n, r in mapped.items()})
    assert mapped["worker1"] and mapped["worker2"], mapped
    assert mapped["worker1"] | mapped["worker2"] == {k for k in keys if k[1] >= 0}
    # The store queue: every task that opens the local-mode store ran on worker1, where the store is.
    assert {t for t, _ in ran["worker1"]} >= STORE_TASKS and not {t for t, _ in ran["worker2"]} & STORE_TASKS

    # No shared disk: XCom carried work-store URLs (and counts), never a worker's folder ...
    for task, index in (("ingest", 1), ("chunk", 0), ("embed", 0)):
        value = str(cluster.xcom("rag_ingest", run_id, task, index))
        assert f"s3://{WORK}/runs/rag_ingest/" in value and str(cluster.home) not in value, (task, value)
    # ... and a fan-out's XCom is only the map indexes' numbers (each reads its shard or batch from the work store)
    fan_outs = [cluster.xcom("rag_ingest", run_id, t, -1) for t in ("split", "plan", "dedupe")]
    assert [json.loads(v) if isinstance(v, str) else v for v in fan_outs] == [[0, 1, 2], [0, 1, 2, 3, 4, 5], [0, 1, 2]]
    # ... the FINISHED run's files were removed from the store, and no worker kept a hand-off file: what stays is
    # the version's committed source state, which the next run merges its listing against.
    left = sorted(o["Key"] for o in s3_server.client.list_objects_v2(Bucket=WORK, Prefix="runs/").get("Contents", []))
    parts = json.loads(s3_server.client.get_object(Bucket=WORK, Key="runs/.state/cluster__v1/manifest.json")["Body"].read())
    assert left == sorted(["runs/.state/cluster__v1/manifest.json"]
                          + [f"runs/.state/cluster__v1/{p['file']}" for p in parts["parts"]]), left
    for name in ("worker1", "worker2"):
        left = [f for f in _files(cluster.worker_home(name)) if f.endswith((".parquet", ".npy", "plan.json"))]
        assert left == [], (name, left)
    assert not (cluster.worker_home("worker2") / "qdrant").exists()

    with open_store(cluster.worker_home("worker1") / "qdrant") as store:
        points = list(store.scroll("cluster__v1", ["doc_id"]))
    assert sorted(p.payload["doc_id"] for p in points) == sorted(k.removeprefix("cluster/") for k in DOCS)

    client = MlflowClient(cluster.mlflow_url)
    from ragtrail.core.products import experiment_name

    exp = client.get_experiment_by_name(experiment_name("cluster"))
    parents = client.search_runs([exp.experiment_id], f"tags.`ragtrail.role` = 'parent' and tags.`airflow.run_id` = '{run_id}'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["ragtrail.status"] == "FINISHED"
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    tracked = {k for k in keys if k[0] not in ("aggregate_status", "approve", "write_groups")}  # untracked plumbing
    # one run per task: a mapped task's map indexes (run on either worker) share one, each a metric step
    got = []
    for c in children:
        if c.data.tags.get("ragtrail.mapped") == "true":
            got += [(c.data.tags["airflow.task_id"], m.step) for m in client.get_metric_history(c.info.run_id, "map_ok")]
        else:
            got.append((c.data.tags["airflow.task_id"], int(c.data.tags["airflow.map_index"])))
    assert sorted(got) == sorted(tracked)
    assert len(children) == len({t for t, _ in tracked})
    assert {c.info.status for c in children} == {"FINISHED"}

    stored = [o["Key"] for o in s3_server.client.list_objects_v2(Bucket=ARTIFACTS).get("Contents", [])]
    index_run = next(c for c in children if c.data.tags["airflow.task_id"] == "index")
    assert client.list_artifacts(index_run.info.run_id)
    assert any(index_run.info.run_id in key for key in stored), stored


# 40 one-line documents, one per ingest shard (40 shards) and per chunk task (40 map indexes), 4 texts per embed
# task (10): 90 mapped task instances.
KILL_DOCS = {f"kill/note{i:02d}.md": f"Note {i}: shard {i} of the kill test." for i in range(40)}
KILL_CONF = {"product": "clusterkill", "docs_per_shard": 1, "docs_per_batch": 1, "texts_per_batch": 4}
MAPPED = ("ingest", "chunk", "embed")
MAP_COUNTS = {"ingest": 40, "chunk": 40, "embed": 10}


def _executing(log: str) -> list[tuple[str, int, int]]:
    """(task_id, map_index, try_number) of each workload a Celery worker's log says it started, in order."""
    found = []
    for line in log.splitlines():
        if "Executing workload" in line:
            task, index, tries = (re.search(pattern, line) for pattern in
                                  (r"task_id='(\w+)'", r"map_index=(-?\d+)", r"try_number=(\d+)"))
            if task and index and tries:
                found.append((task.group(1), int(index.group(1)), int(tries.group(1))))
    return found


def _kill_worker2_mid_run(cluster, run_id: str, timeout: float = 600) -> tuple[str, int]:
    """Once some mapped tasks succeeded and worker2 is running a mapped task, SIGKILL worker2 (group and
    descendants). Returns the (task_id, map_index) it was running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = _executing(cluster.worker_log("worker2"))
        if started and started[-1][0] in MAPPED and len(started) >= 3:
            task, index, _ = held = started[-1]
            tis = {(ti["task_id"], ti["map_index"]): ti for ti in cluster.task_instances("rag_ingest", run_id)}
            done = sum(ti["state"] == "success" for k, ti in tis.items() if k[0] in MAPPED)
            ti = tis.get((task, index))
            # still running there (worker2 runs one task at a time): it holds it; others still to do
            if ti and ti["state"] == "running" and ti["try_number"] == held[2] and 6 <= done <= 70:
                cluster.kill_worker("worker2")
                return task, index
        if cluster.rest("GET", f"/dags/rag_ingest/dagRuns/{run_id}")["state"] in ("success", "failed"):
            break
        time.sleep(0.5)
    pytest.fail(f"worker2 never ran a mapped task while others were left to do: {cluster.logs()}")


def test_a_worker_killed_mid_run_loses_no_work(cluster, s3_server):
    """worker2 dies (SIGKILL, its whole process tree) while it runs one of 90 mapped tasks (40 ingest shards): the scheduler
    finds the task instance without heartbeat, worker1 runs its retry, the DAG run succeeds and rolls up
    FINISHED, the index holds exactly one point per document, and no MLflow run is left RUNNING."""
    from mlflow.tracking import MlflowClient

    from ragtrail.core.products import experiment_name
    from ragtrail.trail.names import CLOSED_BY_TAG, FAILED_INDEXES_TAG, STATUS_TAG, TRAIL_TAG

    put_objects(s3_server.client, BUCKET, KILL_DOCS)
    t0 = time.monotonic()
    run_id = cluster.trigger("rag_ingest", {**KILL_CONF, "source": f"s3://{BUCKET}/kill"})
    held = _kill_worker2_mid_run(cluster, run_id)
    t_kill = time.monotonic() - t0
    assert cluster.wait("rag_ingest", run_id) == "success", cluster.logs()
    wall = time.monotonic() - t0

    tis = cluster.task_instances("rag_ingest", run_id)
    by_key = {(ti["task_id"], ti["map_index"]): ti for ti in tis}
    for task, count in MAP_COUNTS.items():
        assert {m for t, m in by_key if t == task} == set(range(count)), task
    assert all(ti["state"] == ("skipped" if ti["task_id"] == "approve" else "success") for ti in tis), tis
    # The task worker2 held was tried again and succeeded on worker1.
    assert by_key[held]["try_number"] >= 2, (held, by_key[held])
    retried = sorted(k for k, ti in by_key.items() if ti["try_number"] >= 2)
    assert held in retried
    assert held in {(t, m) for t, m, n in _executing(cluster.worker_log("worker1")) if n >= 2}, held
    print(f"\nkill run: worker2 killed at {t_kill:.0f}s holding {held}; run took {wall:.0f}s; retried: {retried}")

    # The roll-up: FINISHED, the held map index FINISHED on its retry.
    summary = cluster.xcom("rag_ingest", run_id, "aggregate_status", key="summary")
    summary = json.loads(summary) if isinstance(summary, str) else summary
    label = f"{held[0]}[{held[1]}]"
    assert summary["status"] == "FINISHED" and summary["tasks"][label] == "FINISHED", summary
    print("roll-up:", summary["status"], "trail:", summary["trail"])

    # Exactly one point per document: none lost, none twice, no stale point.
    with open_store(cluster.worker_home("worker1") / "qdrant") as store:
        points = list(store.scroll("clusterkill__v1", ["doc_id"]))
    ids = [str(p.id) for p in points]
    doc_ids = sorted(p.payload["doc_id"] for p in points)
    assert len(set(ids)) == len(ids) == len(KILL_DOCS), len(points)
    assert doc_ids == sorted(k.removeprefix("kill/") for k in KILL_DOCS)

    client = MlflowClient(cluster.mlflow_url)
    exp = client.get_experiment_by_name(experiment_name("clusterkill"))
    runs = client.search_runs([exp.experiment_id], f"tags.`airflow.run_id` = '{run_id}'", max_results=1000)
    parents = [r for r in runs if r.data.tags.get("ragtrail.role") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags[STATUS_TAG] == "FINISHED", parent.data.tags
    # the killed try logged nothing, and its retry did: no unit of the trail lacks its run
    assert parent.data.tags[TRAIL_TAG] == "complete", parent.data.tags
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                                  max_results=1000)
    left = [(r.info.run_name, r.info.status) for r in [*runs, *children] if r.info.status == "RUNNING"]
    assert left == [], left
    print("runs:", len({r.info.run_id for r in [*runs, *children]}), "closed by:",
          sorted((c.info.run_name, c.data.tags.get("ragtrail.closed_by", "-")) for c in children))
    # The killed map index is in the held task's run: its retry's step, try 2, logged ok.
    run = next(c for c in children if c.data.tags.get("airflow.task_id") == held[0])
    assert run.info.status == "FINISHED" and run.data.tags[FAILED_INDEXES_TAG] == "-", run.data.tags
    assert run.data.tags[CLOSED_BY_TAG] == "aggregate_status"  # a mapped task's shared run: the roll-up ends it
    steps = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "map_ok")}
    assert set(steps) == set(range(MAP_COUNTS[held[0]])) and all(v == 1 for v in steps.values()), steps
    tries = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "map_try")}
    assert tries[held[1]] >= 2, tries
