"""What a re-ingest costs with and without the version's source state: ``python bench/incremental.py``.

A folder of ``--docs`` one-paragraph documents is built once through the real DAG (``dag.test``, the bundled
model). Then, ``--rounds`` times each and alternating, ``--changed`` other documents are edited and the folder
re-ingested:

- **with state** (as shipped): the listing is merged against the source state; only the edited objects are
  read; the plan does not scroll the collection;
- **without state** (the state file removed first: the path every re-ingest took before the state existed,
  and still the fallback): every object is read and the collection is scrolled once.

Per run: wall seconds of the DAG run, of its ingest and plan tasks (their MLflow child runs), objects read,
bytes read, collection scrolls; the medians per kind and their ratios. Results: ``bench/results/incremental.json``; timings are this machine's, read
them as ratios of one run.
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


def _corpus(root: Path, n: int) -> Path:
    words = ["harbour", "glacier", "violin", "comet", "sourdough", "turbine", "beehive", "lantern", "orchard"]
    for i in range(n):
        folder = root / f"part{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{i:05d}.md").write_text(
            f"# Note {i}\n\nNote {i} records {words[i % len(words)]} number {i * 7919 % 10007} on shelf {i // 10}.")
    return root


def _edit(root: Path, ids: list[int], tag: str) -> None:
    for i in ids:
        path = root / f"part{i % 10}" / f"doc{i:05d}.md"
        path.write_text(path.read_text() + f"\n\nEdited ({tag}): a second paragraph for note {i}.")


def _task_figures(summary: dict) -> dict:
    from ragtrail.trail.client import get_client

    c = get_client()
    runs = c.search_runs([summary["experiment_id"]], f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")
    out = {}
    for r in runs:
        if r.info.run_name in ("ingest", "plan", "dedupe", "index"):
            m = r.data.metrics
            out[f"{r.info.run_name}_wall_s"] = round((r.info.end_time - r.info.start_time) / 1000, 2)
            for key in ("objects_read", "objects_skipped", "bytes_in", "collection_scrolls"):
                if key in m:
                    out[key] = m[key]
    return out


def _run(conf: dict, label: str) -> dict:
    from ragtrail.cli.main import run_ingest

    t0 = time.perf_counter()
    summary = run_ingest(conf)
    wall = time.perf_counter() - t0
    assert summary["status"] == "FINISHED", summary
    row = {"run": label, "wall_s": round(wall, 2), "docs": summary["docs"], "added": summary["docs_added"],
           "updated": summary["docs_updated"], "unchanged": summary["docs_unchanged"],
           "embeddings": summary["embeddings"], **_task_figures(summary)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--changed", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="re-ingests of each kind, alternating")
    ap.add_argument("--home", default=None, help="data folder (default: a fresh temporary one)")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="ragtrail-bench-incr-"))
    os.environ["RAGTRAIL_HOME"] = str(home)
    os.environ.setdefault("RAGTRAIL_TRACE_SAMPLE_RATE", "0")

    corpus = _corpus(home / "corpus", args.docs)
    conf = {"source": str(corpus), "product": "benchincr", "version": "v1"}
    rows = [_run(conf, "first build")]
    from ragtrail.core.statefile import open_state

    state = open_state("benchincr__v1", url="")
    step = max(args.docs // (2 * args.changed * args.rounds), 1)
    for r in range(args.rounds):  # alternating, so that load on the machine falls on both alike
        _edit(corpus, [(2 * r * args.changed + k) * step for k in range(args.changed)], f"a{r}")
        rows.append(_run(conf, "re-ingest with state"))
        _edit(corpus, [((2 * r + 1) * args.changed + k) * step for k in range(args.changed)], f"b{r}")
        state.remove()  # the pre-state path: every object read, the collection scrolled once
        rows.append(_run(conf, "re-ingest without state"))
    keys = ("wall_s", "ingest_wall_s", "plan_wall_s", "dedupe_wall_s", "index_wall_s", "objects_read", "bytes_in",
            "collection_scrolls")
    median = {label: {k: statistics.median(r[k] for r in rows if r["run"] == label) for k in keys}
              for label in ("re-ingest with state", "re-ingest without state")}
    with_state, without = median["re-ingest with state"], median["re-ingest without state"]
    result = {"docs": args.docs, "changed": args.changed, "rounds": args.rounds, "machine": os.uname().nodename,
              "runs": rows, "median": median,
              "ratios_with_over_without": {k: round(with_state[k] / without[k], 3) for k in keys if without.get(k)}}
    out = REPO / "bench" / "results" / "incremental.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["ratios_with_over_without"]))


if __name__ == "__main__":
    sys.exit(main())
