"""Peak RSS of ``ragtrail ingest``'s cold first run (a fresh data folder) against the peer, before and after.

Each run is its own child process, measured with ``os.wait4`` (wall, CPU, ``ru_maxrss``: the max of the process
and any child it waited for, so an exporting child counts). Runs, in the order given by ``--runs``:

- ``peer``: ``bench/peer.py`` in its venv (``.data/bench/peer-venv``, made by ``bench/peer.py``'s ``ensure_venv``);
- ``after_cold``: this tree's ``ragtrail ingest --eval-queries Q`` in a brand-new data folder (Airflow DB migration,
  MLflow store, embedder logging, an empty model cache: the first run after ``make install``);
- ``before_cold``: the same with the tree ``--before-tree`` (``git archive <commit> include plugins dags``, put
  first on ``PYTHONPATH``) in the same venv;
- ``after_warm`` / ``before_warm``: a second product in the folder the matching cold run left;
- ``after_fresh`` / ``before_fresh``: a brand-new data folder whose model cache (``RAGTRAIL_MODEL_CACHE``, one per
  tree under ``--work``) earlier runs filled: the first run in a new folder, the export already made.

A label may carry a ``#n`` suffix to repeat it (``before_cold#1,after_cold#1,before_cold#2,…``: alternated timings).
Without ``--questions`` the product's own evaluation set is used (the sample corpus has one: ``make run``); a
corpus inside this repository is read from the same path in ``--before-tree`` by the before runs (the sample
corpus is recognised by its path, and with it its query set).

Example::

    python bench/cold_rss.py --corpus .data/bench/pgdocs/corpus_150 --questions .data/bench/pgdocs/questions_150.jsonl \\
        --before-tree /tmp/main --runs peer,before_cold,after_cold,after_warm,before_warm --out bench/results/memory_cold.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def measure(label: str, cmd: list[str], env: dict, log_dir: Path) -> dict:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{label}.out").open("w") as out, (log_dir / f"{label}.err").open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    row = {"label": label, "rc": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
           "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--questions", type=Path)
    parser.add_argument("--before-tree", type=Path, help="a tree with include/, plugins/, dags/ (the 'before' code)")
    parser.add_argument("--before", default="main", help="what --before-tree is (recorded)")
    parser.add_argument("--runs", default="peer,before_cold,after_cold")
    parser.add_argument("--product", help="the product name (default: pg<kind>)")
    parser.add_argument("--work", type=Path, default=REPO / ".data" / "bench" / "cold_rss")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from ragtrail.stages.embedding import resolve_model_path

    rows = []
    for label in args.runs.split(","):
        env = {k: v for k, v in os.environ.items() if k not in ("RAGTRAIL_MODEL_CACHE", "PYTHONPATH")}
        if label == "peer":
            qdrant = args.work / "peer_qdrant"
            shutil.rmtree(qdrant, ignore_errors=True)
            cmd = [str(REPO / ".data" / "bench" / "peer-venv" / "bin" / "python"), str(REPO / "bench" / "peer.py"),
                   str(args.corpus), str(args.questions), str(qdrant), resolve_model_path("all-MiniLM-L6-v2")]
        else:
            tree, kind = label.split("#")[0].split("_")
            home = args.work / f"home_{tree}" if kind != "fresh" else args.work / f"home_{tree}_fresh"
            if kind in ("cold", "fresh"):
                shutil.rmtree(home, ignore_errors=True)
            if kind == "fresh":
                env["RAGTRAIL_MODEL_CACHE"] = str(args.work / f"models_{tree}")
            env["RAGTRAIL_HOME"] = str(home)
            if tree == "before":
                env["PYTHONPATH"] = f"{args.before_tree / 'include'}:{args.before_tree / 'plugins'}"
            corpus = args.corpus.resolve()
            if tree == "before" and corpus.is_relative_to(REPO):  # the sample corpus is known by its path in the tree
                corpus = args.before_tree / corpus.relative_to(REPO)
            cmd = [str(BIN / "ragtrail"), "ingest", "--source", str(corpus), "--product", args.product or f"pg{kind}",
                   "--json", *(["--eval-queries", str(args.questions)] if args.questions else [])]
        rows.append(measure(label.replace("#", "_"), cmd, env, args.work / "logs"))
    result = {"corpus": str(args.corpus), "files": sum(1 for p in args.corpus.rglob("*") if p.is_file()),
              "before": args.before, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
