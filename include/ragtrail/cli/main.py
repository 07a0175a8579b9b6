"""``ragtrail``: run the pipeline, query the index and review the trail from the shell.

    ragtrail ingest --source include/sample_corpus --product handbook [--json]
    ragtrail search --product handbook "how do retries work?"
    ragtrail versions --product handbook
    ragtrail promote --product handbook --version v1 [--force]
    ragtrail latest --product handbook          # also: runs, tasks, trend, best, compare, summary
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

from ragtrail.cli.flags import add_cli_flags, conf_from_args
from ragtrail.cli.shell import print_summary, stdout_to_stderr, table
from ragtrail.core import settings as rt_settings


def _conf(args) -> dict:
    """The run conf of the given flags; local paths made absolute (the DAG run may start elsewhere)."""
    conf = conf_from_args(args)
    if "://" not in conf["source"]:
        conf["source"] = os.path.abspath(conf["source"])
    if conf.get("eval_queries"):
        conf["eval_queries"] = os.path.abspath(conf["eval_queries"])
    return conf


def run_ingest(conf: dict, dag_id: str = "rag_ingest") -> dict:
    """Run the ``rag_ingest`` DAG (or a product's ``rag_ingest__<name>``) in-process (``dag.test``) and
    return its roll-up summary. An approval cannot be answered in-process: ask for one and it refuses."""
    if conf.get("approval", "off") != "off":
        raise ValueError("approval needs a running Airflow to answer it (make ui, then trigger the DAG there); "
                         "ragtrail ingest runs the DAG in-process")
    from ragtrail.cli.airflow_home import prepare

    prepare()
    from airflow import settings as af_settings
    from airflow.dag_processing.dagbag import DagBag

    if af_settings.Session is None:
        af_settings.configure_orm()
    bag = DagBag(dag_folder=str(rt_settings.DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    from ragtrail.cli.console import show_progress
    from ragtrail.cli.lean_api import lean_execution_api

    show_progress(None)  # Airflow's logging set-up may have disabled the logger: on again
    t0 = time.time()
    with _sigterm_kept(), lean_execution_api():  # ~4 s less start-up: one API version, not ten
        dag_run = dag.test(run_conf=conf)
    summary = _read_summary(dag_run.dag_id, dag_run.run_id)
    if summary is None:
        summary = {"status": "FAILED", "reasons": [f"DAG run ended {dag_run.state} without a roll-up"],
                   "product": conf["product"], "version": conf["version"]}
    summary.setdefault("duration_s", round(time.time() - t0, 3))
    summary["dag_run_state"] = str(dag_run.state)
    return summary


@contextmanager
def _sigterm_kept():
    """Put SIGTERM's handler back after ``dag.test``: Airflow's in-process task runner installs its own (call
    the task's ``on_kill`` and carry on) and never removes it, so the caller would ignore SIGTERM for good."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _read_summary(dag_id: str, run_id: str) -> dict | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=run_id, key="summary", task_ids="aggregate_status", dag_ids=dag_id)
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


def cmd_ingest(args) -> int:
    from ragtrail.cli.console import quiet_terminal
    from ragtrail.sources.reachability import local_source_problem

    conf = _conf(args)
    if "://" not in conf["source"] and (problem := local_source_problem(conf["source"])):
        print(f"ragtrail ingest: {problem} (no run started)", file=sys.stderr)  # the DAG's preflight, early
        return 2
    with stdout_to_stderr() as out:
        with quiet_terminal(args.verbose, rt_settings.ragtrail_home()) as log_path:
            try:
                summary = run_ingest(conf)
            except Exception as err:
                print(f"ragtrail ingest: {type(err).__name__}: {err}", file=sys.stderr)
                summary = {"status": "FAILED", "reasons": [str(err)], "product": args.product,
                           "version": args.version or "v1"}
        if args.json:
            out.write(json.dumps(summary, default=str) + "\n")
        else:
            print_summary(summary, out)
        out.flush()
    ok = summary.get("status") == "FINISHED"
    if not ok:
        print(f"ragtrail ingest: pipeline {summary.get('status')}: " + "; ".join(summary.get("reasons") or []),
              file=sys.stderr)
        if log_path:
            print(f"ragtrail ingest: Airflow's log of this run: {log_path}", file=sys.stderr)
    return 0 if ok else 1


def cmd_search(args) -> int:
    from ragtrail.stages.search import search_many

    if args.queries:
        with open(args.queries) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        queries = {str(r["id"]): r["text"] for r in rows}
    elif args.query:
        queries = {"q": " ".join(args.query)}
    else:
        print("ragtrail search: give a QUERY or --queries FILE", file=sys.stderr)
        return 2
    with stdout_to_stderr() as out:
        try:
            collection = None
            if args.from_registry:  # what the registry's production alias names, not the Qdrant alias
                from ragtrail.trail.registry import production_collection

                collection = production_collection(args.product)
            started = time.time_ns()
            results = search_many(args.product, queries, k=args.k,
                                  collection=collection, mode=args.mode, fusion=args.fusion,
                                  sparse_weight=args.sparse_weight)
            ended = time.time_ns()
        except (LookupError, ValueError) as err:
            print(f"ragtrail search: {err}", file=sys.stderr)
            return 1
        if args.json:
            out.write(json.dumps(results if args.queries else results["q"]) + "\n")
        else:
            for qid, hits in results.items():
                if args.queries:
                    print(f"## {qid}: {queries[qid]}", file=out)
                for rank, h in enumerate(hits, 1):
                    text = " ".join((h["text"] or "").split())
                    print(f"{rank:>2}. {h['score']:.3f}  {h['doc_id']}  {text[:110]}", file=out)
        out.flush()
        from ragtrail.trail.names import SEARCH_SPAN
        from ragtrail.trail.traces import trace_search

        trace_search(SEARCH_SPAN, args.product, queries, collection, None, args.k, results, started, ended)
    return 0


def cmd_versions(args) -> int:
    from ragtrail.store import check_name, list_versions, open_store, resolve_store, store_label

    settings = resolve_store()
    with open_store(settings) as store:
        versions = list_versions(store, check_name("product", args.product))
    if args.json:
        print(json.dumps([{**v, "store": settings.kind} for v in versions], default=str))
        return 0
    if not versions:
        print(f"{args.product}: no versions built yet ({store_label(settings)})")
        return 1
    print(f"{args.product} lives in {store_label(settings)}")
    rows = [["*" if v["live"] else "", v["version"], v["points"], v.get("embedder"), v.get("embed_backend"),
             v.get("chunk_size"), v.get("chunk_overlap"),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(v.get("built_at", 0)))] for v in versions]
    print(table(rows, ["", "version", "points", "embedder", "backend", "chunk", "overlap", "built"]))
    return 0


def _tracking_on() -> bool:
    from ragtrail.trail.switches import tracking_enabled

    return tracking_enabled()


def gate_refusal(product: str, collection: str) -> str | None:
    """Why the evaluation gate held this version back, per its registry record; ``None`` if it did not."""
    if not _tracking_on():
        return None
    from ragtrail.trail.names import GATE_REASON_TAG, GATE_TAG
    from ragtrail.trail.registry import version_record

    record = version_record(product, collection)
    if record and record["tags"].get(GATE_TAG) == "rejected":
        return f"{collection} was held back by the evaluation gate: {record['tags'].get(GATE_REASON_TAG)}"
    return None


def cmd_promote(args) -> int:
    from ragtrail.models.agreement import go_live
    from ragtrail.store import check_name, collection_name

    product = check_name("product", args.product)
    try:
        refusal = None if args.force else gate_refusal(product, collection_name(product, args.version))
    except ValueError as err:
        print(f"ragtrail promote: {err}", file=sys.stderr)
        return 1
    if refusal:
        print(f"ragtrail promote: {refusal}; --force promotes it anyway", file=sys.stderr)
        return 1
    client = None
    if _tracking_on():  # keep the registry's production alias on what searches see
        from ragtrail.trail.client import guarded_client

        client = guarded_client()
    try:
        moved = go_live(product, collection_name(product, args.version), client)
    except LookupError as err:
        print(f"ragtrail promote: {err}", file=sys.stderr)
        return 1
    name, registered = moved["live"], moved["model_version"]
    print(f"{args.product} -> {name}" + (f" (ragtrail-{product} version {registered} is production)" if registered else ""))
    return 0


def cmd_ui(args) -> int:
    from ragtrail.cli.localui import main as ui_main

    return ui_main([args.action])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ragtrail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="run the rag_ingest DAG in-process on a source")
    add_cli_flags(ing)  # one flag per run-spec row (ragtrail.core.spec), with its bounds
    ing.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ing.add_argument("--verbose", action="store_true",
                     help="show Airflow's own log lines too (by default they go to a file under the data folder)")
    ing.set_defaults(func=cmd_ingest)

    se = sub.add_parser("search", help="query a product's live index")
    se.add_argument("--product", required=True, help="the product whose live index is queried")
    se.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    se.add_argument("--queries", help="JSON lines file of {id, text}")
    se.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    se.add_argument("--mode", choices=("dense", "sparse", "hybrid"),
                    help="retrieval mode (default: the version's own, set by its build's --retrieval-mode)")
    se.add_argument("--fusion", choices=("rrf", "dbsf"), help="how hybrid mode fuses (default: the version's own)")
    se.add_argument("--sparse-weight", type=float, metavar="W",
                    help="hybrid mode: the BM25 side's weight, 0 to 1 (default: the version's own)")
    se.add_argument("--from-registry", action="store_true",
                    help="query the collection of the registry's production version instead of the Qdrant alias")
    se.add_argument("query", nargs="*")
    se.set_defaults(func=cmd_search)

    ve = sub.add_parser("versions", help="list a product's built versions (* = live)")
    ve.add_argument("--product", required=True, help="the product whose versions are listed")
    ve.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ve.set_defaults(func=cmd_versions)

    pr = sub.add_parser("promote", help="point a product's alias at one of its versions")
    pr.add_argument("--product", required=True, help="the product whose alias moves")
    pr.add_argument("--version", required=True, help="the built version the alias will point at")
    pr.add_argument("--force", action="store_true", help="promote even a version the evaluation gate held back")
    pr.set_defaults(func=cmd_promote)
    from ragtrail.cli.trail_commands import add_commands

    add_commands(sub)
    ui = sub.add_parser("ui", help="start / stop Airflow and the MLflow UI on loopback (make ui / make stop)")
    ui.add_argument("action", choices=["start", "stop", "status"], nargs="?", default="start")
    ui.set_defaults(func=cmd_ui)
    for name, command in sub.choices.items():  # every command: library log lines only when asked for
        if name != "ingest":
            command.add_argument("--verbose", action="store_true", help="show the libraries' own log lines too")
    return p


def main(argv: list[str] | None = None) -> int:
    from ragtrail.cli.console import quiet_libraries

    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
