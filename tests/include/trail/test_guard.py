"""Bounded MLflow calls: retries, backoff, the per-task budget, and lenient / strict behaviour on a dead port."""

from __future__ import annotations

import os
import socket
import threading
import uuid

import pytest
import requests
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException, RestException
from servers import free_port

from ragtrail.core.envvar import BadSetting
from ragtrail.trail.guard import Guard, GuardedClient, Policy, TrackingUnavailable, is_transient
from ragtrail.trail.task_run import TaskRun

HTTP_VARS = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "RAGTRAIL_MLFLOW_HTTP_TIMEOUT_SET")


@pytest.fixture(autouse=True)
def fresh_process_limits(monkeypatch):
    """Each test starts as a new process would: MLflow's HTTP settings unset (and put back afterwards)."""
    for name in HTTP_VARS:
        monkeypatch.setenv(name, "unset")  # remembers the value to restore
        monkeypatch.delenv(name)


class FakeClock:
    """Time that only moves when a call or a sleep says so: budgets are checked without waiting."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def refused(*_args, **_kwargs):
    raise MlflowException("API request to http://mlflow:5000/api/2.0/mlflow/runs/create failed with exception "
                          "HTTPConnectionPool(host='mlflow', port=5000): Connection refused")


def test_retries_back_off_then_the_guard_opens():
    """4 retries after the first failure, pauses 0.5-1-2-4 s, then TrackingUnavailable naming the URI;
    later calls of the task fail at once without touching MLflow."""
    clock, calls = FakeClock(), []
    guard = Guard("http://user:pw@mlflow:5000", Policy(timeout_s=10, retries=4, backoff_s=0.5, budget_s=30),
                  clock=clock, sleep=clock.sleep)
    with pytest.raises(TrackingUnavailable) as err:
        guard.call(lambda: calls.append(1) or refused())
    assert len(calls) == 5 and clock.sleeps == [0.5, 1, 2, 4]
    assert "http://***@mlflow:5000" in str(err.value) and "pw" not in str(err.value)
    assert "5 failed attempts" in str(err.value) and guard.open
    with pytest.raises(TrackingUnavailable, match="gave up earlier"):
        guard.call(lambda: calls.append(2))
    assert calls == [1] * 5


def test_an_attempt_starts_only_when_the_budget_covers_it():
    """Each attempt may take MLflow's whole HTTP timeout (never cut short); one starts only when what is left of
    the budget covers it, so the budget holds: 10 + 1 + 10 = 21 s of 25, then 4 s left is not enough."""
    clock, timeouts = FakeClock(), []

    def slow():
        timeouts.append(MLFLOW_HTTP_REQUEST_TIMEOUT.get())  # what MLflow's HTTP layer reads
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0  # MLflow's own retries are off
        clock.now += timeouts[-1]  # the request runs into its timeout
        raise requests.exceptions.ReadTimeout("read timed out")

    guard = Guard("http://mlflow:5000", Policy(timeout_s=10, retries=10, backoff_s=1, budget_s=25),
                  clock=clock, sleep=clock.sleep)
    with pytest.raises(TrackingUnavailable, match="time budget spent"):
        guard.call(slow)
    assert timeouts == [10, 10] and guard.spent_s == pytest.approx(21)
    with pytest.raises(TrackingUnavailable, match="gave up earlier"):
        guard.call(slow)
    assert len(timeouts) == 2


def test_a_budget_smaller_than_one_attempt_makes_no_attempt(monkeypatch):
    """The user's own MLFLOW_HTTP_REQUEST_TIMEOUT wins and is the length of an attempt; a budget that cannot hold
    one opens the guard at once, naming both numbers."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    calls = []
    guard = Guard("http://mlflow:5000", Policy(timeout_s=10, budget_s=30))
    assert guard.attempt_s == 60 and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
    with pytest.raises(TrackingUnavailable, match="time budget spent: 30.0 s left, one attempt may take 60 s"):
        guard.call(lambda: calls.append(1))
    assert calls == [] and guard.attempts == 0


def test_mlflow_reads_the_limits_from_the_environment_once_the_trail_client_is_built(tmp_path):
    """The first trail client of a process sets MLflow's two HTTP settings in the environment, the way MLflow
    reads them (its own ``get``, not patched); a later client with another policy leaves them as they are."""
    from ragtrail.trail.client import guarded_client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = guarded_client(Policy(timeout_s=7.9, budget_s=30), uri=uri)
    assert {k: os.environ.get(k) for k in HTTP_VARS} == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "7",
                                                         "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                                         "RAGTRAIL_MLFLOW_HTTP_TIMEOUT_SET": "7"}
    for var in (MLFLOW_HTTP_REQUEST_TIMEOUT, MLFLOW_HTTP_REQUEST_MAX_RETRIES):
        assert "get" not in vars(var)  # MLflow's own method, not one put on the object at run time
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7 and MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 0
    assert client.guard.attempt_s == 7
    longer = guarded_client(Policy(timeout_s=9, budget_s=30), uri=uri)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7" and longer.guard.attempt_s == 7
    shorter = guarded_client(Policy(timeout_s=3, budget_s=30), uri=uri)  # lowers what this process set
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3" and client.guard.attempt_s == shorter.guard.attempt_s == 3


def test_a_short_request_budget_after_a_task_sized_guard_still_retries():
    """The API server: a task-sized guard (10 s attempts) came first in the process, then a request's guard
    (5 s attempts, 10 s budget) meets one quick transient failure. It must try again, not give up with
    'time budget spent' because the first guard's 10 s attempt no longer fits its budget (the fresh-clone
    suite's REST and browser failures)."""
    Guard("sqlite:///x.db", Policy(timeout_s=10, budget_s=30))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
    clock, calls = FakeClock(), []
    guard = Guard("sqlite:///x.db", Policy(timeout_s=5, retries=1, backoff_s=0.5, budget_s=10), clock=clock,
                  sleep=clock.sleep)
    assert guard.call(lambda: calls.append(1) or (refused() if len(calls) == 1 else "ok")) == "ok"
    assert len(calls) == 2 and guard.attempt_s == 5


def test_a_child_process_may_lower_the_timeout_its_ragtrail_parent_set(tmp_path):
    """`ragtrail ui start` (a guard's process) starts the API server: the child inherits the parent's 10 s with
    the mark that ragtrail set it, so the server's request budget may still lower it; a user's own value
    (no mark) is never lowered."""
    import subprocess
    import sys

    Guard("sqlite:///x.db", Policy(timeout_s=10, budget_s=30))
    child = ("from ragtrail.trail.guard import Guard, Policy; import os; "
             "g = Guard('sqlite:///x.db', Policy(timeout_s=5, budget_s=10)); "
             "print(os.environ['MLFLOW_HTTP_REQUEST_TIMEOUT'], g.attempt_s)")
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=dict(os.environ))
    assert run.stdout.split() == ["5", "5"], run.stderr[-2000:]
    user = {k: v for k, v in os.environ.items() if k != "RAGTRAIL_MLFLOW_HTTP_TIMEOUT_SET"}
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=user)
    assert run.stdout.split() == ["10", "10"], run.stderr[-2000:]


def test_a_server_that_never_answers_costs_one_timeout_per_attempt():
    """A real MlflowClient call to a port that accepts but never answers: the guard's 1 s timeout reaches MLflow's
    HTTP request (MLflow's own default would wait 120 s, seven times), so the call gives up after one attempt."""
    from mlflow.tracking import MlflowClient

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete, nobody ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = GuardedClient(MlflowClient(uri), Guard(uri, Policy(timeout_s=1, retries=0, budget_s=5)))
        outcome = []

        def call():
            try:
                client.search_experiments(max_results=1)
            except Exception as err:
                outcome.append(err)

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(60)  # not a speed check: without the limit this waits for minutes
    assert outcome and isinstance(outcome[0], TrackingUnavailable), outcome
    assert "Read timed" in str(outcome[0]) and client.guard.attempts == 1


def test_errors_retrying_cannot_fix_propagate_at_once():
    clock = FakeClock()
    guard = Guard("http://mlflow:5000", Policy(), clock=clock, sleep=clock.sleep)
    bad = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Changing param values is not allowed"})
    with pytest.raises(RestException):
        guard.call(lambda: (_ for _ in ()).throw(bad))
    assert guard.attempts == 1 and not guard.open and clock.sleeps == []


@pytest.mark.parametrize("err, transient", [
    (MlflowException("API request to http://h/api failed with exception Connection refused"), True),
    (MlflowException("API request to http://h/api failed with timeout exception Read timed out."), True),
    (MlflowException("API request to endpoint /api/2.0/x failed with error code 503 != 200"), True),
    (MlflowException("API request to endpoint /api/2.0/x failed with error code 404 != 200"), False),
    (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}), True),
    (RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no run"}), False),
    (MlflowException("(sqlite3.OperationalError) database is locked"), True),
    (requests.exceptions.ConnectionError("refused"), True),
    (ConnectionResetError("reset"), True),
    (ValueError("bad"), False),
])
def test_what_counts_as_transient(err, transient):
    assert is_transient(err) is transient


@pytest.fixture()
def dead_mlflow(monkeypatch):
    """MLFLOW_TRACKING_URI on a loopback port nobody listens on, with a small, quick policy."""
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RAGTRAIL_MLFLOW_RETRIES", "2")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_BACKOFF_S", "0.1")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_BUDGET_S", "5")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_TIMEOUT_S", "1")  # an attempt must fit the budget, with room for retries
    return uri


def test_a_real_refused_connection_is_bounded(dead_mlflow):
    from mlflow.tracking import MlflowClient

    client = GuardedClient(MlflowClient(dead_mlflow), Guard(dead_mlflow))
    with pytest.raises(TrackingUnavailable) as err:
        client.search_experiments(max_results=1)
    assert dead_mlflow in str(err.value) and client.guard.attempts == 3


def test_task_run_lenient_goes_on_untracked(dead_mlflow, monkeypatch):
    """Lenient (the default): the block runs, the recorder still works, nothing is raised."""
    monkeypatch.delenv("RAGTRAIL_TRACKING_MODE", raising=False)
    ran = []
    with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="embed", product="faults", version="v1") as run:
        run.recorder.metric(embedding_count=3)
        ran.append(True)
    assert ran and run.mlflow_run_id is None and dead_mlflow in run.tracking_error


def test_task_run_strict_fails_with_one_clear_error(dead_mlflow, monkeypatch):
    monkeypatch.setenv("RAGTRAIL_TRACKING_MODE", "strict")
    with pytest.raises(TrackingUnavailable) as err:
        with TaskRun(dag_id="d", run_id=f"r-{uuid.uuid4()}", task_id="embed", product="faults", version="v1"):
            pytest.fail("the task body must not run when its run cannot be opened in strict mode")
    assert f"MLflow tracking at {dead_mlflow} is unavailable" in str(err.value)
    assert "strict tracking mode" in str(err.value)


def test_unknown_tracking_mode_is_refused(monkeypatch):
    monkeypatch.setenv("RAGTRAIL_TRACKING_MODE", "sometimes")
    with pytest.raises(BadSetting) as err:
        Policy.from_env()
    assert str(err.value) == ("RAGTRAIL_TRACKING_MODE='sometimes' is not one of lenient, strict "
                              "(what a task does when MLflow is down; e.g. lenient)")
