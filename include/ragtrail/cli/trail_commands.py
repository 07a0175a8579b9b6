"""``ragtrail runs|latest|tasks|trend|best|compare|summary``: the trail from the shell.

Readable tables by default; ``--json`` prints exactly one JSON document on stdout (the same data the
REST API serves). Every answer ends with the MLflow UI URL of what it shows.

    ragtrail latest --product handbook
    ragtrail compare --product handbook --last 5
    ragtrail trend --product handbook --metric vector_count --by version
    ragtrail runs --product handbook --status FAILED --since 7d --where "params.chunk_size = '200'"
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ragtrail.cli.shell import fmt as _num
from ragtrail.cli.shell import stdout_to_stderr, table
from ragtrail.trail.queries import TREND_METRICS, Trail

HEADLINE = ("docs_parsed", "chunk_count", "vector_count", "ndcg_at_10", "recall_at_10", "latency_p95_ms",
            "embeddings_per_second")


def _runs_table(runs: list[dict]) -> str:
    rows = [[r["start_time"][:19].replace("T", " ") if r["start_time"] else "-", r["version"],
             r["status"] + (" (worse than live)" if r.get("warnings") else ""),
             r["duration_s"], *(r["metrics"].get(k) for k in HEADLINE), r["run_id"]] for r in runs]
    return table(rows, ["started (UTC)", "version", "status", "seconds", "docs", "chunks", "vectors",
                        "nDCG@10", "recall@10", "p95 ms", "emb/s", "mlflow run"])


def _tasks_table(tasks: list[dict]) -> str:
    main = {"ingest": "docs_parsed", "chunk": "chunk_count", "embed": "embedding_count", "index": "vector_count"}
    rows = [[t["label"], t["status"], t["try_number"], t["duration_s"],
             f"{main[t['task_id']]}={_num(t['metrics'].get(main[t['task_id']]))}" if t["task_id"] in main else "",
             (t["error"] or "")[:60]] for t in tasks]
    return table(rows, ["task", "status", "try", "seconds", "result", "error"])


def show_runs(d: dict) -> str:
    return f"{_runs_table(d['runs']) if d['runs'] else '(no runs match)'}\n\n{d['mlflow_url']}"


def show_latest(d: dict) -> str:
    run, cfg = d["run"], d["config"]
    lines = [f"{d['product']} {d['version']}: {run['status']}  ({run['start_time']}, {_num(run['duration_s'])} s)"]
    lines += [f"  problem: {r}" for r in run["reasons"]]
    lines += [f"  warning: {w}" for w in run.get("warnings") or []]
    if run["trail"] == "incomplete":
        lines.append(f"  trail incomplete: no MLflow run for {', '.join(run['missing_runs']) or '(runs closed late)'}")
    lines.append("  config: " + ", ".join(f"{k}={_num(v)}" for k, v in cfg.items() if k != "source"))
    lines.append("  " + ", ".join(f"{k}={_num(run['metrics'].get(k))}" for k in HEADLINE))
    lines += ["", _tasks_table(d["tasks"])]
    lines += [f"in flight: {r['version']} since {r['start_time']}  {r['mlflow_url']}" for r in d["running"]]
    return "\n".join(lines + ["", d["mlflow_url"]])


def show_tasks(d: dict) -> str:
    extra = f"\nno MLflow run for: {', '.join(d['missing_runs'])}" if d["missing_runs"] else ""
    return f"{_tasks_table(d['tasks'])}{extra}\n\n{d['mlflow_url']}"


def show_trend(d: dict) -> str:
    values = [p["value"] for p in d["points"] if isinstance(p["value"], (int, float))]
    top = max(values, default=0) or 1

    def bar(v: Any) -> str:
        return "#" * round(30 * v / top) if isinstance(v, (int, float)) and v > 0 else ""

    def x(p: dict) -> str:
        return p["x"][:19].replace("T", " ") if d["by"] == "time" else p["x"]

    if d["metric"] == "status":
        rows = [[x(p), p["version"], p["status"]] for p in d["points"]]
        heads = [d["by"], "version", "status"]
    else:
        rows = [[x(p), p["version"], p["status"], p["value"], bar(p["value"])]
                for p in d["points"]]
        heads = [d["by"], "version", "status", d["metric"], ""]
    if d["by"] == "version":
        rows, heads = [r[:1] + r[2:] for r in rows], heads[:1] + heads[2:]
    return f"{d['metric']} by {d['by']}\n" + table(rows, heads) + f"\n\n{d['mlflow_url']}"


def show_best(d: dict) -> str:
    run = d["run"]
    return (f"best {d['metric']} ({d['mode']}): {_num(d['value'])} — {run['version']} {run['status']} "
            f"started {run['start_time']}\n  params: " + ", ".join(f"{k}={v}" for k, v in sorted(run["params"].items()))
            + f"\n\n{d['mlflow_url']}")


def show_compare(d: dict) -> str:
    heads = ["", *(f"{r['version']} {r['run_id'][:8]}" for r in d["runs"])]
    rows = [["status", *d["status"]]]
    rows += [[f"{k}{' *' if k in d['diff']['params'] else ''}", *vs] for k, vs in d["params"].items()]
    rows += [[f"{k}{' *' if k in d['diff']['metrics'] else ''}", *vs] for k, vs in d["metrics"].items()]
    return (table(rows, heads) + "\n\n* differs; the first column is the baseline\n" + d["mlflow_url"])


def show_summary(d: dict) -> str:
    rows = [[p["product"], p["runs"], p["by_status"].get("FINISHED", 0), p["by_status"].get("PARTIAL", 0),
             p["by_status"].get("FAILED", 0), p["success_rate"], p["mean_duration_s"],
             p["latest"]["version"] if p["latest"] else "-", p["latest"]["status"] if p["latest"] else "-"]
            for p in d["products"]]
    t = d["totals"]
    rows.append(["(all)", t["runs"], t["by_status"].get("FINISHED", 0), t["by_status"].get("PARTIAL", 0),
                 t["by_status"].get("FAILED", 0), t["success_rate"], None, "", ""])
    return table(rows, ["product", "runs", "finished", "partial", "failed", "success", "mean s", "latest",
                        "status"]) + f"\n\n{d['mlflow_url']}"


def _run(args, fn, show) -> int:

    with stdout_to_stderr() as out:
        try:
            data = fn(Trail())
        except (LookupError, ValueError) as err:
            print(f"ragtrail {args.command}: {err}", file=sys.stderr)
            return 1
        out.write((json.dumps(data, default=str) if args.json else show(data)) + "\n")
        out.flush()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the trail commands on the ``ragtrail`` parser."""

    def cmd(name: str, help_: str, fn, show, product: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        if product:
            p.add_argument("--product", "-p", required=True, help="product name")
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        p.set_defaults(func=lambda args: _run(args, lambda t: fn(t, args), show))
        return p

    p = cmd("runs", "list and search a product's pipeline runs", lambda t, a: t.runs(
        a.product, version=a.version, status=a.status, where=a.where, since=a.since, until=a.until,
        order_by=a.order_by, ascending=a.asc, limit=a.limit or None), show_runs)
    p.add_argument("--version", help="only runs that built this version")
    p.add_argument("--status", help="FINISHED, PARTIAL, FAILED, RUNNING or KILLED")
    p.add_argument("--where", help="MLflow filter, e.g. \"metrics.vector_count > 100 and params.chunk_size = '200'\"")
    p.add_argument("--since", help="ISO date/time or age (7d, 12h)")
    p.add_argument("--until", help="ISO date/time or age")
    p.add_argument("--order-by", default="start_time", help="start_time (default) or a metric name")
    p.add_argument("--asc", action="store_true", help="oldest / smallest first")
    p.add_argument("--limit", type=int, default=20, help="at most N runs (0: all; default 20)")

    cmd("latest", "how the latest version did: status, metrics, config, tasks",
        lambda t, a: t.latest(a.product), show_latest)

    p = cmd("tasks", "per-task breakdown of one pipeline run", lambda t, a: t.tasks(a.run_id), show_tasks,
            product=False)
    p.add_argument("run_id", help="the pipeline run's (parent) MLflow run id")

    p = cmd("trend", "a metric (or status) over versions or time", lambda t, a: t.trend(
        a.product, a.metric, by=a.by, limit=a.limit), show_trend)
    p.add_argument("--metric", "-m", default="vector_count",
                   help=f"metric name or 'status' (e.g. {', '.join(TREND_METRICS)})")
    p.add_argument("--by", choices=["version", "time"], default="version",
                   help="version: one point per version (its newest FINISHED run); time: one point per run "
                        "(default version)")
    p.add_argument("--limit", type=int, default=50, help="newest N runs considered (default 50)")

    p = cmd("best", "the run with the best value of a metric", lambda t, a: t.best(
        a.product, a.metric, mode="min" if a.min else "max", status=None if a.any_status else "FINISHED"), show_best)
    p.add_argument("--metric", "-m", required=True, help="the metric to rank runs by (e.g. ndcg_at_10)")
    p.add_argument("--min", action="store_true", help="lowest wins (default highest)")
    p.add_argument("--any-status", action="store_true", help="consider failed and partial runs too")

    p = cmd("compare", "2+ pipeline runs side by side, differences marked", lambda t, a: t.compare(
        a.run_ids or None, product=a.product, last=a.last), show_compare, product=False)
    p.add_argument("run_ids", nargs="*", help="run ids, baseline first")
    p.add_argument("--product", "-p", help="instead of ids: the product's newest run against its last N")
    p.add_argument("--last", type=int, default=5, help="how many earlier runs (default 5)")

    p = cmd("summary", "runs, status counts, success rate, durations across products",
            lambda t, a: t.summary(a.product or None), show_summary, product=False)
    p.add_argument("--product", "-p", action="append", help="only these products (repeatable)")

    from ragtrail.cli.registry_commands import add_commands as add_registry_commands

    add_registry_commands(sub)
