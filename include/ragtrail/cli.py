"""``ragtrail``: run the pipeline, query the index and review the trail from the shell.

    ragtrail ingest --source include/sample_corpus --product handbook [--json]
    ragtrail search --product handbook "how do retries work?"
    ragtrail latest --product handbook          # also: runs, tasks, trend, best, compare, summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager

from ragtrail import settings as rt_settings


@contextmanager
def stdout_to_stderr():
    """Send everything written to fd 1 (Airflow's and MLflow's logs too) to stderr; yield the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w")
    try:
        yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)


def _conf(args) -> dict:
    conf = {"source": os.path.abspath(args.source) if "://" not in args.source else args.source,
            "product": args.product, "version": args.version}
    for key in ("chunk_size", "chunk_overlap", "embedder", "batch_size"):
        if getattr(args, key, None) is not None:
            conf[key] = getattr(args, key)
    return conf


def run_ingest(conf: dict, dag_id: str = "rag_ingest") -> dict:
    """Run the ``rag_ingest`` DAG (or a product's ``rag_ingest__<name>``) in-process (``dag.test``) and
    return its roll-up summary."""
    from ragtrail.airflow_home import prepare

    prepare()
    from airflow import settings as af_settings
    from airflow.dag_processing.dagbag import DagBag

    if af_settings.Session is None:
        af_settings.configure_orm()
    bag = DagBag(dag_folder=str(rt_settings.DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(dag_id)
    t0 = time.time()
    dag_run = dag.test(run_conf=conf)
    summary = _read_summary(dag_run.dag_id, dag_run.run_id)
    if summary is None:
        summary = {"status": "FAILED", "reasons": [f"DAG run ended {dag_run.state} without a roll-up"],
                   "product": conf["product"], "version": conf["version"]}
    summary.setdefault("duration_s", round(time.time() - t0, 3))
    summary["dag_run_state"] = str(dag_run.state)
    return summary


def _read_summary(dag_id: str, run_id: str) -> dict | None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=run_id, key="summary", task_ids="aggregate_status", dag_ids=dag_id)
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


def _print_summary(summary: dict, out) -> None:
    s = rt_settings.load()
    lines = [
        f"status      {summary.get('status')}",
        f"product     {summary.get('product')} (version {summary.get('version')})",
        f"documents   {summary.get('docs', 0)} indexed, {summary.get('docs_failed', 0)} quarantined",
        f"chunks      {summary.get('chunks', 0)}",
        f"vectors     {summary.get('vectors', 0)} in collection {summary.get('collection')}",
        f"wall time   {summary.get('duration_s')} s",
        f"parent run  {summary.get('parent_run_id') or '- (tracking off)'}",
    ]
    trail = summary.get("trail") or {}
    if trail.get("complete") is False:
        gaps = ", ".join(trail.get("missing_runs") or []) or "-"
        lines.append(f"trail       INCOMPLETE: no MLflow run for {gaps}; closed late: "
                     f"{', '.join(trail.get('closed_runs') or []) or '-'}; {trail.get('error') or ''}".rstrip("; "))
    for reason in summary.get("reasons") or []:
        lines.append(f"problem     {reason}")
    if summary.get("parent_run_id"):
        lines += ["", "Open the trail in the MLflow UI:", f"  {s.mlflow_server_command}",
                  f"  then {summary.get('mlflow_url')}"]
    print("\n".join(lines), file=out)


def cmd_ingest(args) -> int:
    with stdout_to_stderr() as out:
        try:
            summary = run_ingest(_conf(args))
        except Exception as err:
            print(f"ragtrail ingest: {type(err).__name__}: {err}", file=sys.stderr)
            summary = {"status": "FAILED", "reasons": [str(err)], "product": args.product, "version": args.version}
        if args.json:
            out.write(json.dumps(summary, default=str) + "\n")
        else:
            _print_summary(summary, out)
        out.flush()
    ok = summary.get("status") == "FINISHED"
    if not ok:
        print(f"ragtrail ingest: pipeline {summary.get('status')}: " + "; ".join(summary.get("reasons") or []),
              file=sys.stderr)
    return 0 if ok else 1


def cmd_search(args) -> int:
    from ragtrail.search import search_many

    s = rt_settings.load()
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
            results = search_many(args.product, queries, location=s.qdrant_url or s.qdrant_path, k=args.k)
        except LookupError as err:
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
    return 0


def cmd_ui(args) -> int:
    from ragtrail.localui import main as ui_main

    return ui_main([args.action])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ragtrail", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="run the rag_ingest DAG in-process on a source")
    ing.add_argument("--source", required=True, help="folder or file:// URI of documents")
    ing.add_argument("--product", required=True, help="index name (Qdrant alias, MLflow experiment)")
    ing.add_argument("--version", default="v1", help="build configuration name (default v1)")
    ing.add_argument("--chunk-size", type=int, help="max tokens per chunk (default 200)")
    ing.add_argument("--chunk-overlap", type=int, help="tokens shared by consecutive chunks (default 32)")
    ing.add_argument("--embedder", help="sentence-transformers model name or folder")
    ing.add_argument("--batch-size", type=int, help="texts per encode() batch")
    ing.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    ing.set_defaults(func=cmd_ingest)

    se = sub.add_parser("search", help="query a product's live index")
    se.add_argument("--product", required=True)
    se.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    se.add_argument("--queries", help="JSON lines file of {id, text}")
    se.add_argument("--json", action="store_true")
    se.add_argument("query", nargs="*")
    se.set_defaults(func=cmd_search)

    from ragtrail.cli_trail import add_commands

    add_commands(sub)
    ui = sub.add_parser("ui", help="start / stop Airflow and the MLflow UI on loopback (make ui / make stop)")
    ui.add_argument("action", choices=["start", "stop", "status"], nargs="?", default="start")
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
