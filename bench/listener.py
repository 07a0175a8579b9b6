"""What the listener costs a user's task: ms per task on the local store, and the DAG run's wall-time ratio.

One process, one fresh data folder (SQLite MLflow store, SQLite Airflow): a DAG tagged ``mlflow`` with a
mapped no-op task over ``--tasks`` items runs with ``dag.test`` four times — a warm-up, tracking off
(baseline), on, off again — so the ratio compares runs in the same process under the same load. While tracking is
on, the listener's two hooks of every task (``on_task_instance_running`` → opening the child run,
pushing the link's XCom, exporting the MLflow environment; ``on_task_instance_success`` → ending it)
are timed around the listener's own functions. The first task also opens the MLflow client (importing
MLflow, migrating a new store): reported apart as ``setup_ms``, the median is over the other tasks.

Run: ``.venv/bin/python bench/listener.py [--tasks 30]`` (``make bench`` runs it; writes
``bench/results/listener.json``). Goal: median ≤ 50 ms per task.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAG = '''
from datetime import datetime
from airflow.sdk import dag, task

@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["mlflow"])
def bench_listener():
    @task
    def noop(i: int) -> int:
        return i

    noop.expand(i=list(range({tasks})))

bench_listener()
'''


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=30)
    args = p.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="ragtrail-bench-listener-"))
    dags = home / "dags"
    dags.mkdir()
    (dags / "bench_listener.py").write_text(DAG.replace("{tasks}", str(args.tasks)))
    os.environ.update({"RAGTRAIL_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from ragtrail.cli.airflow_home import prepare

    prepare(home)
    from airflow.dag_processing.dagbag import DagBag

    from ragtrail_airflow import listener

    dag = DagBag(str(dags)).get_dag("bench_listener")
    hooks: list[tuple[str, float]] = []

    import cProfile

    profile = cProfile.Profile() if os.environ.get("RAGTRAIL_BENCH_PROFILE") else None

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            if profile is not None and len(hooks) > 2:  # the first task's set-up apart
                profile.enable()
            try:
                return fn(*a, **kw)
            finally:
                if profile is not None:
                    profile.disable()
                hooks.append((name, time.perf_counter() - t0))
        return wrapper

    listener._start = timed("start", listener._start)
    listener._finish = timed("finish", listener._finish)

    def run(tracking: str) -> float:
        os.environ["RAGTRAIL_TRACKING"] = tracking
        t0 = time.perf_counter()
        dag.test()
        return time.perf_counter() - t0

    run("off")  # warm-up: Airflow's first DAG run in a process pays for its own imports
    off_1 = run("off")
    hooks.clear()
    on = run("on")
    timed_hooks = list(hooks)
    off_2 = run("off")
    starts = [s for n, s in timed_hooks if n == "start"]
    finishes = [s for n, s in timed_hooks if n == "finish"]
    per_task = [a + b for a, b in zip(starts, finishes, strict=False)]
    result = {
        "tasks": args.tasks,
        "setup_ms": round(per_task[0] * 1000, 1),
        "median_ms_per_task": round(statistics.median(per_task[1:]) * 1000, 1),
        "p90_ms_per_task": round(sorted(per_task[1:])[int(0.9 * (len(per_task) - 2))] * 1000, 1),
        "median_start_ms": round(statistics.median(starts[1:]) * 1000, 1),
        "median_finish_ms": round(statistics.median(finishes[1:]) * 1000, 1),
        "dag_run_s": {"off": round(off_1, 2), "on": round(on, 2), "off_again": round(off_2, 2)},
        "ratio_on_vs_off": round(on / ((off_1 + off_2) / 2), 3),
        "goal_median_ms": 50,
    }
    result["goal_met"] = result["median_ms_per_task"] <= 50
    if profile is not None:  # RAGTRAIL_BENCH_PROFILE=1: where the hooks' time goes
        import pstats

        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    out = REPO / "bench" / "results" / "listener.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
