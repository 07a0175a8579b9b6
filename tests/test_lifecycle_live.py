"""The index's life after the first build, under a live scheduler + triggerer + api-server and a real
``mlflow server`` (SQLite backend, webhooks on) and moto's S3:

- an asset watcher starts a product's run when a file lands in its folder or an object under its S3
  prefix — and nothing starts while the sources are unchanged;
- approve and reject through Airflow's REST API (``PATCH …/hitlDetails``): alias and registry follow;
- moving ``@production`` through the MLflow client reaches Qdrant through the registry webhook →
  ``/ragtrail/hooks/mlflow`` → an asset event → ``rag_registry_sync``; ``ragtrail reconcile`` repairs
  drift where no webhook fired.

One stack for the whole module; polls every 2 s.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.request
import uuid

import pytest
from conftest import TEST_HOME, put_objects, run_cli, write_corpus
from live_airflow import LiveAirflow
from servers import mlflow_server

from ragtrail.core.settings import SAMPLE_CORPUS

SECRET = f"whsec-{uuid.uuid4().hex}"
DOCS = ["airflow/trigger-rules.md", "airflow/xcom-and-large-data.txt", "glossary.md"]
BUCKET, PREFIX = "lifecycle", "docs/"


def _queries(path):
    keep = [json.loads(line) for line in (SAMPLE_CORPUS.parent / "sample_corpus_queries.jsonl").read_text().splitlines()]
    keep = [q for q in keep if set(q["relevant"] if isinstance(q["relevant"], list) else q["relevant"]) <= set(DOCS)]
    path.write_text("".join(json.dumps(q) + "\n" for q in keep))
    return path


@pytest.fixture(scope="module")
def stack(s3_server):
    home = TEST_HOME / f"lifecycle-{uuid.uuid4().hex[:6]}"
    folder = home / "watched"
    for rel in DOCS:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE_CORPUS / rel, folder / rel)
    queries = _queries(home / "queries.jsonl")
    put_objects(s3_server.client, BUCKET, {f"{PREFIX}a.md": "# Alpha\n\nThe first S3 document.\n"})
    (home / "products.yml").write_text(f"""
products:
  - {{name: watched, source: {folder}, schedule: on_change, approval: {{mode: always}},
     evaluation: {{queries: {queries}}}}}
  - {{name: watched_s3, source: "s3://{BUCKET}/{PREFIX}", schedule: on_change}}
""")
    server = mlflow_server(home / "mlflow", env={"MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                                                 "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                                                 "MLFLOW_WEBHOOK_CACHE_TTL": "1"}).start()
    env = {"RAGTRAIL_PRODUCTS_FILE": str(home / "products.yml"), "RAGTRAIL_WATCH_POLL_S": "2",
           "MLFLOW_TRACKING_URI": server.url, "RAGTRAIL_WEBHOOK_SECRET": SECRET, "RAGTRAIL_TASK_RETRIES": "0",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
    airflow = LiveAirflow(home, env)
    try:
        airflow.start("rag_registry_sync")
        for dag_id in ("rag_ingest__watched", "rag_ingest__watched_s3", "rag_registry_sync"):
            airflow.cli("dags", "unpause", dag_id)
        airflow.folder, airflow.mlflow, airflow.s3 = folder, server, s3_server
        yield airflow
    finally:
        airflow.stop()
        server.stop()


def _runs(stack, dag_id: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(stack.db) as con:
        return con.execute("select run_id, run_type, state from dag_run where dag_id=? order by id", (dag_id,)).fetchall()


def _watching(stack) -> bool:
    """Both watchers have stored their baseline digest in the assets' state store."""
    with sqlite3.connect(stack.db) as con:
        try:
            return con.execute("select count(*) from asset_state_store").fetchone()[0] >= 2
        except sqlite3.OperationalError:
            return False


def _ti_state(stack, dag_id: str, run_id: str, task_id: str) -> str | None:
    with sqlite3.connect(stack.db) as con:
        row = con.execute("select state from task_instance where dag_id=? and run_id=? and task_id=?",
                          (dag_id, run_id, task_id)).fetchone()
    return row[0] if row else None


def _rest(stack, method: str, path: str, body: dict | None = None) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port}/auth/token", timeout=30) as resp:
        token = json.loads(resp.read())["access_token"]
    req = urllib.request.Request(f"http://127.0.0.1:{stack.port}/api/v2{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _client(stack):
    from mlflow.tracking import MlflowClient

    return MlflowClient(stack.mlflow.url)


def _alias(stack, product: str) -> str | None:
    from ragtrail.store import open_store

    with open_store(str(stack.home / "qdrant")) as store:
        return store.alias_target(product)


def _answer(stack, run_id: str, option: str) -> dict:
    dag_id = "rag_ingest__watched"
    stack.wait_for("approve awaiting input", lambda: _ti_state(stack, dag_id, run_id, "approve") == "awaiting_input",
                   timeout=600, poll=2)
    stack.wait_deferral_drained(dag_id, run_id, "approve")  # a quick answer can meet apache/airflow#72716
    detail = _rest(stack, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails")
    assert "nDCG@10" in detail["body"] and "MLflow: [new build]" in detail["body"], detail["body"]
    return _rest(stack, "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails",
                 {"chosen_options": [option]})


def test_nothing_starts_while_the_sources_are_unchanged(stack):
    """The watchers record a baseline; with nothing changed, several polls later still no run exists."""
    stack.wait_for("both watchers polled", lambda: _watching(stack), timeout=180)
    time.sleep(8)  # four polls
    assert _runs(stack, "rag_ingest__watched") == [] and _runs(stack, "rag_ingest__watched_s3") == []


def test_a_new_s3_object_starts_a_run(stack):
    put_objects(stack.s3.client, BUCKET, {f"{PREFIX}b.md": "# Beta\n\nA second document arrived.\n"})
    runs = stack.wait_for("an asset-triggered run of rag_ingest__watched_s3",
                          lambda: _runs(stack, "rag_ingest__watched_s3"), timeout=90)
    assert [r[1] for r in runs] == ["asset_triggered"]
    assert stack.wait("rag_ingest__watched_s3", runs[0][0]) == "success", stack.report("rag_ingest__watched_s3", runs[0][0])
    assert len(_runs(stack, "rag_ingest__watched_s3")) == 1  # its own run changed nothing in the source


def test_a_new_file_starts_a_run_and_approval_moves_alias_and_registry(stack):
    write_corpus(stack.folder, {"new-page.md": "# Sensors\n\nA sensor waits for something to happen.\n"})
    runs = stack.wait_for("an asset-triggered run of rag_ingest__watched", lambda: _runs(stack, "rag_ingest__watched"),
                          timeout=90)
    run_id = runs[0][0]
    assert runs[0][1] == "asset_triggered"
    assert _alias(stack, "watched") is None  # approval "always": nothing went live on its own
    answer = _answer(stack, run_id, "Approve")
    assert answer["chosen_options"] == ["Approve"]
    assert stack.wait("rag_ingest__watched", run_id) == "success", stack.report("rag_ingest__watched", run_id)
    assert _alias(stack, "watched") == "watched__v1"
    mv = _client(stack).get_model_version_by_alias("ragtrail-watched", "production")
    assert mv.version == "1" and mv.tags["ragtrail.approval"] == "approved"
    assert mv.tags["ragtrail.approval_by"] not in ("", "timeout") and mv.tags["ragtrail.approval_at"]
    assert _client(stack).get_run(mv.run_id).data.tags["ragtrail.approval"] == "approved"
    with sqlite3.connect(stack.db) as con:  # the index went live: an event of its asset, with the build in the extra
        extra = con.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id "
                            "where a.name = 'ragtrail_index__watched'").fetchall()
    assert [json.loads(x[0])["collection"] for x in extra] == ["watched__v1"]
    assert "ndcg_at_10" in json.loads(extra[0][0])


def test_reject_keeps_the_live_version_and_the_build_stays_candidate(stack):
    run_id = stack.trigger("rag_ingest__watched", {"version": "v2"})
    _answer(stack, run_id, "Reject")
    # A decision, not a failure: the run succeeds, the approve task is skipped (nothing published).
    assert stack.wait("rag_ingest__watched", run_id) == "success", stack.report("rag_ingest__watched", run_id)
    assert _ti_state(stack, "rag_ingest__watched", run_id, "approve") == "skipped"
    assert _alias(stack, "watched") == "watched__v1"
    client = _client(stack)
    assert client.get_model_version_by_alias("ragtrail-watched", "production").version == "1"
    # Found by its collection, not by the candidate alias: an asset-triggered run may register after it.
    (rejected,) = [mv for mv in client.search_model_versions("name = 'ragtrail-watched'")
                   if mv.tags.get("ragtrail.collection") == "watched__v2"]
    assert rejected.version != "1" and rejected.tags.get("ragtrail.approval") == "rejected", rejected.tags


def test_the_webhook_refuses_a_bad_signature(stack):
    req = urllib.request.Request(f"http://127.0.0.1:{stack.port}/ragtrail/hooks/mlflow", method="POST", data=b"{}",
                                 headers={"X-MLflow-Signature": "v1,AAAA", "X-MLflow-Timestamp": str(int(time.time())),
                                          "X-MLflow-Delivery-Id": "x"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 401


def test_moving_production_in_mlflow_moves_the_qdrant_alias(stack):
    from ragtrail.trail.registry import ensure_webhook

    client = _client(stack)
    ensure_webhook(client, f"http://127.0.0.1:{stack.port}/ragtrail/hooks/mlflow", SECRET)
    time.sleep(2)  # the server's webhook cache (TTL 1 s)
    client.set_registered_model_alias("ragtrail-watched", "production", "2")
    stack.wait_for("the alias to follow @production", lambda: _alias(stack, "watched") == "watched__v2",
                   timeout=180, poll=2)
    (run_id,) = [r[0] for r in _runs(stack, "rag_registry_sync") if r[1] == "asset_triggered"]  # (not the hourly one)
    assert stack.wait("rag_registry_sync", run_id) == "success"
    with sqlite3.connect(stack.db) as con:  # the move is an index event too
        causes = [json.loads(x[0])["cause"] for x in con.execute(
            "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.name = 'ragtrail_index__watched'")]
    assert causes[-1] == "registry @production", causes


def test_reconcile_repairs_drift_where_no_webhook_fired(stack):
    client = _client(stack)
    for hook in client.list_webhooks():
        client.delete_webhook(hook.webhook_id)
    time.sleep(2)
    client.set_registered_model_alias("ragtrail-watched", "production", "1")
    env = {"RAGTRAIL_HOME": str(stack.home), "MLFLOW_TRACKING_URI": stack.mlflow.url}
    drift = run_cli("reconcile", "--product", "watched", "--dry-run", "--json", env=env)
    assert json.loads(drift.stdout)[0]["action"] == "store", drift.stderr
    assert _alias(stack, "watched") == "watched__v2"
    fixed = run_cli("reconcile", env=env)
    assert fixed.returncode == 0 and "alias moved" in fixed.stdout, fixed.stdout + fixed.stderr
    assert _alias(stack, "watched") == "watched__v1"
    assert os.environ.get("RAGTRAIL_HOME") != str(stack.home)
