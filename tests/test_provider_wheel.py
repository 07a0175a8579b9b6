"""ragtrail as a provider: its wheel in a fresh venv with Airflow, a user's DAG (not ragtrail's) under a live
scheduler with LocalExecutor, one tag and no change to the task code.

The venv holds only the wheel and what it declares without an extra — the tracking provider, not the RAG
kit (``ragtrail[rag]``): no qdrant-client, qdrant-edge-py, pypdf or sentence-transformers — pinned by requirements.lock (no
repository on the path: the components run in their own home, the DAGs are copies in a folder of their own,
the tracking URI is a plain SQLite store).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from live_airflow import LiveAirflow

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
FINAL = ("FINISHED", "FAILED", "KILLED")


@pytest.fixture(scope="module")
def provider_venv(tmp_path_factory) -> Path:
    """``uv build`` the wheel, then a fresh venv with the wheel and what it needs, no extra (pinned by the lock)."""
    root = tmp_path_factory.mktemp("provider")
    dist = root / "dist"
    subprocess.run([str(UV), "build", "--wheel", "-q", "-o", str(dist), str(REPO)], check=True, cwd=root)
    (wheel,) = dist.glob("ragtrail-*.whl")
    venv = root / "venv"
    subprocess.run([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], check=True, cwd=root)
    pins = [line for line in (REPO / "requirements.lock").read_text().splitlines() if not line.startswith("torch")]
    (root / "constraints.txt").write_text("\n".join(pins))
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel),
                    "-c", str(root / "constraints.txt")], check=True, cwd=root, timeout=900)
    return venv


@pytest.fixture(scope="module")
def user_airflow(provider_venv, tmp_path_factory):
    """Airflow from the fresh venv, with three user DAGs copied next to it and its own MLflow store."""
    home = tmp_path_factory.mktemp("user-airflow")
    dags = home / "dags"
    shutil.copytree(REPO / "tests" / "user_dags", dags)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(dags), "MLFLOW_TRACKING_URI": uri,
           "RAGTRAIL_MLFLOW_UI_URL": "http://mlflow.example:5000", "PATH": f"{provider_venv / 'bin'}:/usr/bin:/bin"}
    airflow = LiveAirflow(home, env, bin_dir=provider_venv / "bin")
    airflow.env.pop("PYTHONPATH", None)
    airflow.env.pop("VIRTUAL_ENV", None)
    airflow.start("user_slow", timeout=300)
    try:
        for dag_id in ("user_tracked", "user_plain"):
            airflow._wait(dag_id, 120, 1, "user DAGs")
        airflow.uri = uri
        yield airflow
    finally:
        airflow.stop()


# What importing the provider may never load: the RAG kit's libraries and its own modules.
KIT_LIBRARIES = ("pandas", "qdrant_client", "qdrant_edge", "pypdfium2", "sentence_transformers")
PROVIDER_MODULES = ("ragtrail_airflow", "ragtrail_airflow.plugin", "ragtrail_airflow.listener",
                    "ragtrail_airflow.operator", "ragtrail_airflow.links", "ragtrail_airflow.dagrun_closer",
                    "ragtrail_airflow.config", "ragtrail_airflow.api", "ragtrail.trail", "ragtrail.trail.task_run",
                    "ragtrail.trail.closer", "ragtrail.trail.queries", "ragtrail.trail.track")


def test_the_provider_installs_and_imports_without_the_kit(provider_venv):
    """The wheel without an extra brings no RAG library; importing the provider (plugin, listener, operator,
    links, closer, trail) and building its web apps loads none of them, nor a kit module of ragtrail."""
    code = ("import importlib, json, sys\n"
            f"for name in {PROVIDER_MODULES!r}:\n    importlib.import_module(name)\n"
            "from ragtrail_airflow.plugin import RagtrailPlugin\n"
            "apps = [a['name'] for a in RagtrailPlugin().fastapi_apps]\n"
            "from importlib.util import find_spec\n"
            f"missing = [n for n in {KIT_LIBRARIES[1:]!r} if find_spec(n) is None]\n"
            "print(json.dumps({'modules': sorted(sys.modules), 'apps': apps, 'missing': missing}))\n")
    out = subprocess.run([str(provider_venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=provider_venv, env={"PATH": "/usr/bin:/bin", "HOME": str(provider_venv)})
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["missing"] == list(KIT_LIBRARIES[1:])  # not installed at all
    loaded = [m for m in seen["modules"] if m.split(".")[0] in KIT_LIBRARIES]
    assert not loaded, f"importing the provider loaded {loaded}"
    kit = [m for m in seen["modules"] if m.split(".")[:2] in (["ragtrail", "stages"], ["ragtrail", "sources"],
                                                               ["ragtrail", "store"], ["ragtrail", "models"],
                                                               ["ragtrail_airflow", "rag"])]
    assert not kit, f"importing the provider loaded kit modules: {kit}"
    assert seen["apps"] == ["ragtrail"]  # the REST API and page; no registry webhook without the kit


def client(airflow):
    from ragtrail.trail.client import get_client

    return get_client(airflow.uri)


def runs_of(airflow, dag_id: str, run_id: str) -> tuple:
    """(parent, children) of one DAG run, from every experiment."""
    c = client(airflow)
    exps = [e.experiment_id for e in c.search_experiments()]
    runs = c.search_runs(exps, f"tags.`airflow.dag_id` = '{dag_id}' and tags.`airflow.run_id` = '{run_id}'",
                         max_results=500)
    parents = [r for r in runs if r.data.tags.get("ragtrail.role") == "parent"]
    return parents, [r for r in runs if r.data.tags.get("ragtrail.role") == "task"]


def wait_closed(airflow, dag_id: str, run_id: str, timeout: float = 180) -> tuple:
    """Wait until the DAG run's parent is closed and no child is RUNNING (the closer runs after the run ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parents, children = runs_of(airflow, dag_id, run_id)
        if parents and all(r.info.status in FINAL for r in parents + children):
            return parents, children
        time.sleep(2)
    raise AssertionError(f"trail of {dag_id} {run_id} still open: "
                         f"{[(r.info.run_name, r.info.status) for r in sum(runs_of(airflow, dag_id, run_id), [])]}\n"
                         + airflow.logs())


def test_a_tagged_user_dag_leaves_a_full_trail_with_links(user_airflow):
    """One parent, one child per try and map index with the right status, the task's own metric in its run,
    conf as params (secrets masked), PARTIAL on the parent, and the links in the REST API."""
    run_id = user_airflow.trigger("user_tracked", {"learning_rate": 0.1, "api_token": "s3cret"})
    assert user_airflow.wait("user_tracked", run_id, timeout=600) == "failed"  # square[2] fails
    (parent,), children = wait_closed(user_airflow, "user_tracked", run_id)

    got = sorted((c.data.tags["airflow.task_id"], int(c.data.tags["airflow.map_index"]),
                  int(c.data.tags["airflow.try_number"]), c.info.status) for c in children)
    assert got == [("flaky", -1, 1, "FAILED"), ("flaky", -1, 2, "FINISHED"), ("hello", -1, 1, "FINISHED"),
                   ("square", 0, 1, "FINISHED"), ("square", 1, 1, "FINISHED"), ("square", 2, 1, "FAILED"),
                   ("train", -1, 1, "FINISHED")]
    by_label = {(c.info.run_name, c.data.tags["airflow.try_number"]): c for c in children}
    train = by_label[("train", "1")]
    assert train.data.metrics["accuracy"] == 0.93  # mlflow.log_metric in the task's own code
    assert train.data.metrics["rows"] == 12  # the returned dict's numbers (DAG tag mlflow.log_returns)
    assert train.data.params["learning_rate"] == "0.1" and train.data.params["api_token"] == "***"
    assert by_label[("hello", "1")].data.tags["airflow.operator"] == "BashOperator"
    failed = by_label[("square[2]", "1")]
    assert failed.data.tags["ragtrail.error"] == "ValueError: three is not welcome"
    assert by_label[("flaky", "1")].data.tags["ragtrail.error_class"] == "RuntimeError"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert "/dags/user_tracked/runs/" in train.data.tags["airflow.url"]

    assert parent.data.tags["ragtrail.status"] == "PARTIAL" and parent.info.status == "FAILED"
    assert "square[2]: failed (ValueError: three is not welcome)" in parent.data.tags["ragtrail.reasons"]
    assert parent.data.params["api_token"] == "***" and parent.data.metrics["tasks_failed"] == 1

    links = user_airflow.api("GET", f"/dags/user_tracked/dagRuns/{quote(run_id)}/taskInstances/hello/links")
    assert links["extra_links"]["MLflow run"].endswith(
        f"/runs/{by_label[('hello', '1')].info.run_id}?workflowType=machine_learning")
    assert links["extra_links"]["MLflow pipeline run"].startswith("http://mlflow.example:5000/#/experiments/")
    assert parent.info.run_id in links["extra_links"]["MLflow pipeline run"]
    mapped = user_airflow.api("GET", f"/dags/user_tracked/dagRuns/{quote(run_id)}/taskInstances/square/links"
                                     "?map_index=1")
    assert by_label[("square[1]", "1")].info.run_id in mapped["extra_links"]["MLflow run"]
    on_dag_run = user_airflow.api("GET", f"/ragtrail/api/dag_runs/user_tracked/{quote(run_id, safe='')}")
    assert on_dag_run["run_id"] == parent.info.run_id and on_dag_run["status"] == "PARTIAL"


def _running_slow(airflow) -> tuple[str, int]:
    run_id = airflow.trigger("user_slow", {})
    pid_file = airflow.home / f"slow-{run_id}.pid"
    deadline = time.monotonic() + 240
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the slow task never started:\n" + airflow.logs()
        time.sleep(1)
    return run_id, int(pid_file.read_text())


def test_a_dag_run_marked_failed_through_the_rest_api_closes_its_trail(user_airflow):
    """PATCH state=failed while a task runs: Airflow 3.3 fires on_dag_run_failed in the API server, the closer
    ends the running task's run and the parent, and the parent says why."""
    run_id, pid = _running_slow(user_airflow)
    user_airflow.api("PATCH", f"/dags/user_slow/dagRuns/{quote(run_id)}", {"state": "failed"})
    (parent,), children = wait_closed(user_airflow, "user_slow", run_id)
    slow = next(c for c in children if c.info.run_name == "slow")
    assert slow.info.status in ("FAILED", "KILLED")
    assert parent.data.tags["ragtrail.dag_run_state"] == "failed"
    assert "manually set to `failed`" in parent.data.tags["ragtrail.reasons"]
    assert "slow: failed" in parent.data.tags["ragtrail.reasons"]
    _wait_gone(pid)


def test_a_sigkilled_task_leaves_no_run_running(user_airflow):
    """SIGKILL the task's process mid-task: no listener hook runs in it, the run is left RUNNING until the DAG
    run fails; then the closer (in a child of the scheduler) closes it by Airflow's state and the parent
    names it."""
    run_id, pid = _running_slow(user_airflow)
    os.kill(pid, signal.SIGKILL)
    assert user_airflow.wait("user_slow", run_id, timeout=300) == "failed"
    (parent,), children = wait_closed(user_airflow, "user_slow", run_id)
    slow = next(c for c in children if c.info.run_name == "slow")
    assert slow.info.status == "FAILED" and slow.data.tags["ragtrail.closed_by"] == "dag_run_closer"
    assert parent.data.tags["ragtrail.trail_closed"] == "slow" and parent.data.tags["ragtrail.trail"] == "incomplete"
    assert "slow: failed" in parent.data.tags["ragtrail.reasons"]


def test_an_untagged_dag_leaves_no_trace(user_airflow):
    run_id = user_airflow.trigger("user_plain", {})
    assert user_airflow.wait("user_plain", run_id, timeout=300) == "success"
    c = client(user_airflow)
    assert not any("user_plain" in e.name for e in c.search_experiments())
    assert runs_of(user_airflow, "user_plain", run_id) == ([], [])


def _wait_gone(pid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    raise AssertionError(f"the slow task (pid {pid}) is still running after its DAG run was marked failed")
