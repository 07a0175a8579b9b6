"""How every pipeline task's memory and time grow with the corpus: ``make bench-scale`` (``SCALE_SIZES=20000,80000,320000``).

For each size N: a synthetic corpus of N one-chunk text documents (a folder, 1,000 files per sub-folder), then
one DAG run of the real pipeline's task functions (:mod:`ragtrail_airflow.rag.pipeline`: ``ingest``,
``plan``, ``chunk[]``, ``dedupe``, ``embed[]``, ``write[]``, ``index``, ``evaluate``) called as the Airflow tasks call
them: the run's params, a ``dag_run``, and the tracker of a real :class:`ragtrail.trail.task_run.TaskRun`
(one MLflow run per task instance, in this bench's own SQLite MLflow store). The store is the embedded
default (Qdrant Edge), the work store the default local folder.

Processes: each stage gets a fresh Python process (a "worker" that imports the stage code); every task
instance — each map index of ``chunk``, ``embed`` and ``write`` too — runs in a process forked from it, as
Airflow's task supervisor forks one per task instance. A task's **peak RSS** is the largest
``ru_maxrss`` of its instances' processes (``os.wait4``), its **wall** the sum of its instances' walls
(run one after another here; Airflow runs map indexes side by side).

The embedder: ``ragtrail.stages.embedding.load_model`` is replaced, in the embed worker only, by
:class:`HashEmbedder` (``bench-hash-embedder``: 384-d unit vectors from SHAKE-256 of the text,
deterministic, ~µs per text) — the embed stage's own code (parquet reading, batching, the ``.npy``
memory map) runs unchanged around it. Named as such in the output.

Reported per task and size: peak RSS, wall, the largest XCom (the task's return value as JSON, bytes).
Per task: RSS = a + b·N fitted by least squares over the sizes, b in bytes per document (target
b < 50 B/doc). Per DAG run: the MLflow runs tagged with its run id. Then a re-ingest of the largest size
with 0.1 % of the documents changed, added or deleted (a third each): its wall as a share of the first
build's (target ≤ 5 %) and the number of ``scroll`` calls on the store (counted by wrapping the store
class's ``scroll`` in every task process): whole-collection scrolls and filtered ones apart.

The write groups (the run's own, decided by dedupe as in the DAG: ``RAGTRAIL_WRITE_GROUP_POINTS`` points each at
most, cut at the Edge parts; each reads only the embed batches its chunk batches need) and the index task are probed at their own failpoints (``/proc/self/smaps``,
``/proc/self/status``; no memory cost): the ``.npy`` memory maps held open and their resident pages, and the
anonymous RSS after a writer's last upsert (Python heap plus the in-process Edge store's heap).
``--before-tree`` (a tree with an earlier ``include/`` and ``plugins/``) runs that tree's index task too, on
the same chunk and embed results, into its own store folder (``index_before``): the same data, before and
after a change to the store path (an old tree's one index task writes every point itself).

Results: ``bench/results/scale.json`` and a table on stdout. Timings are this machine's (2 shared cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
DIM = 384
DAG_ID = "rag_scale_bench"
PRODUCT = "scale"
EMBEDDER_NAME = "bench-hash-embedder (replaces ragtrail.stages.embedding.load_model in the embed worker)"
TARGET_B = 50.0
TARGET_REINGEST = 0.05
TASKS = ("split", "ingest", "plan", "chunk", "dedupe", "embed", "write", "index", "evaluate")
MAPPED = {"ingest": "split", "chunk": "plan", "embed": "dedupe"}  # mapped task → the task whose list it maps over
PROBED = ("write", "index")

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega river stone cloud field forest harbour lantern meadow orbit pillar quartz "
         "signal tunnel valley window yarrow zephyr").split()


# ---------------------------------------------------------------- the fast deterministic embedder

class HashEmbedder:
    """A stand-in for the sentence-transformers model with the same ``encode`` call: each text's vector is
    SHAKE-256 of its UTF-8 bytes (384 bytes → centred → L2-normalised float32). Deterministic; no model."""

    device = "cpu"
    max_seq_length = 256

    def get_embedding_dimension(self) -> int:
        return DIM

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        import numpy as np

        raw = b"".join(hashlib.shake_256(t.encode()).digest(DIM) for t in texts)
        m = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), DIM).astype(np.float32) - 127.5
        return m / np.linalg.norm(m, axis=1, keepdims=True)


def _hash_model(embedder="", backend=""):
    return HashEmbedder()


# ---------------------------------------------------------------- corpus

def doc_text(i: int, rev: int = 0) -> str:
    """Document ``i``'s text (revision ``rev``): ~40 words, one chunk, distinct per document and revision."""
    words = [WORDS[(i * 7 + k * 13 + rev * 5) % len(WORDS)] for k in range(36)]
    return f"Document {i} revision {rev}. " + " ".join(words) + f". Reference {i:07d}-{rev}."


def doc_path(root: Path, i: int) -> Path:
    return root / f"d{i // 1000:04d}" / f"doc{i:07d}.txt"


def make_corpus(root: Path, n: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    for i in range(n):
        p = doc_path(root, i)
        if i % 1000 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(doc_text(i))


def change_corpus(root: Path, n: int, share: float) -> dict:
    """Change, add and delete a third each of ``share``·n documents (spread over the corpus)."""
    k = max(3, round(n * share))
    third = k // 3
    step = max(1, n // (2 * third + 1))
    changed = [i for i in range(0, n, step)][:third]
    deleted = [i for i in range(step // 2, n, step)][: k - 2 * third]
    for i in changed:
        doc_path(root, i).write_text(doc_text(i, rev=1))
    for i in deleted:
        doc_path(root, i).unlink()
    for i in range(n, n + third):
        p = doc_path(root, i)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(doc_text(i))
    return {"changed": len(changed), "added": third, "deleted": len(deleted), "total": len(changed) + third + len(deleted)}


# ---------------------------------------------------------------- one stage worker (its own process)

def _count_scrolls(counter: dict) -> None:
    """Wrap the store classes' ``scroll`` so every call is counted (whole collection / filtered)."""
    from ragtrail.store.edge import EdgeStore

    for cls in (EdgeStore,):
        real = cls.scroll

        def scroll(self, name, fields, *, where=None, _real=real, **kw):
            counter["scrolls_filtered" if where else "scrolls_full"] += 1
            return _real(self, name, fields, where=where, **kw)

        cls.scroll = scroll


def _call(task: str, arg, params: dict, dag_run, tracker, tracked_run):
    from ragtrail_airflow.rag import pipeline as p

    kw = {"params": params, "tracker": tracker, "dag_run": dag_run}
    if task == "index" and "chunked" in arg:  # an earlier tree's index task (--before-tree): it wrote every point
        return p.index(arg["chunked"], arg["embedded"], **kw)
    calls = {
        "split": lambda: p.split(**kw), "ingest": lambda: p.ingest(arg, **kw), "plan": lambda: p.plan(arg["docs"], **kw),
        "chunk": lambda: p.chunk(arg, **kw), "dedupe": lambda: p.dedupe(arg["chunked"], **kw),
        "embed": lambda: p.embed(arg, **kw),
        "write": lambda: p.write(arg["group"], results=arg["results"], **kw),
        "index": lambda: p.index(arg["written"], **kw),
        # tracked_run=None: no model registration (it would save the embedder's weights; there are none).
        "evaluate": lambda: p.evaluate(arg["indexed"], tracked_run=None, outlet_events=None, **kw),
    }
    if task not in calls:
        raise ValueError(task)
    return calls[task]()


def _npy_maps() -> tuple[int, int]:
    """(memory maps of ``.npy`` files, their resident KB) in this process."""
    maps = rss = 0
    current = False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                current = line.rstrip().endswith(".npy")
                maps += current
            elif current and line.startswith("Rss:"):
                rss += int(line.split()[1])
    return maps, rss


def _probe_index(probe: dict) -> None:
    """Sample the write and index stages at their own failpoints (every 8th upsert, and the others): ``.npy``
    memory maps open and their resident pages, and the process's anonymous memory (Python heap and the embedded
    store's native heap together). Reading ``/proc`` costs the stage no memory (tracemalloc would)."""
    import ragtrail.stages.indexing as indexing
    import ragtrail.stages.writing as writing

    def sampler(real):
        def sample(name, workdir=None):
            probe["calls"] += 1
            if ".after_upsert_" not in name or probe["calls"] % 8 == 0:
                maps, rss = _npy_maps()
                probe["npy_maps_max"] = max(probe["npy_maps_max"], maps)
                probe["npy_rss_kb_max"] = max(probe["npy_rss_kb_max"], rss)
                # every point of the writer (or, in an earlier tree's index task, of the run) written
                if name in ("write.before_receipt", "index.before_receipt", "index.before_delete"):
                    probe["rss_anon_kb_written"] = max(probe["rss_anon_kb_written"], _status_kb("RssAnon"))
            return real(name, workdir)
        return sample

    writing.failpoint = sampler(writing.failpoint)
    indexing.failpoint = sampler(indexing.failpoint)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        return next((int(line.split()[1]) for line in f if line.startswith(key + ":")), 0)


def task_run(task: str, map_index: int, spec: dict):
    """The TaskRun of one task instance, as the Airflow operator opens it (``ragtrail_airflow.operator``): a
    mapped task's map indexes share one MLflow run (``shared=True``), so the trail does not grow with N."""
    from ragtrail.trail.task_run import TaskRun

    params = spec["params"]
    return TaskRun(dag_id=DAG_ID, run_id=spec["run_id"], task_id=task, product=params["product"],
                   version=params["version"], map_index=map_index, stage=task,
                   parent_params={k: params[k] for k in ("product", "version")}, shared=True)


def _instance(task: str, map_index: int, arg, spec: dict, out: Path) -> None:
    """One task instance, in a forked process: a TaskRun around the task function, its result to ``out``."""
    counter = {"scrolls_full": 0, "scrolls_filtered": 0}
    _count_scrolls(counter)
    probe = {"calls": 0, "npy_maps_max": 0, "npy_rss_kb_max": 0, "rss_anon_kb_written": 0}
    if task in PROBED:
        _probe_index(probe)
    dag_run = SimpleNamespace(dag_id=DAG_ID, run_id=spec["run_id"])
    params = spec["params"]
    t0 = time.perf_counter()
    with task_run(task, map_index, spec) as run:
        try:
            result = _call(task, arg, params, dag_run, run.recorder, None)
        finally:
            run.recorder.close()
    wall = time.perf_counter() - t0
    out.write_text(json.dumps({"result": result, "wall_s": wall, "xcom_bytes": len(json.dumps(result)), **counter,
                               "probe": probe}))


def worker(spec_path: str) -> None:
    """A stage's worker: import the stage code, then fork one process per task instance, one at a time."""
    spec = json.loads(Path(spec_path).read_text())
    task = spec["task"]
    import pyarrow.parquet  # noqa: F401

    import ragtrail.stages.embedding as embedding
    from ragtrail.trail.task_run import preload
    from ragtrail_airflow.rag import pipeline  # noqa: F401

    preload()
    if task == "embed":
        embedding.load_model = _hash_model  # the seam the embed stage loads its model through
    items = spec["items"]
    rows = []
    for i, arg in enumerate(items):
        out = Path(spec["out_dir"]) / f"{spec['name']}_{i:05d}.json"
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _instance(task, i if spec["mapped"] else -1, arg, spec, out)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status, ru = os.wait4(pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{task}[{i}] failed (see the log)")
        got = json.loads(out.read_text())
        rows.append({"rss_kb": ru.ru_maxrss, "wall_s": wall, "xcom_bytes": got["xcom_bytes"],
                     "scrolls_full": got["scrolls_full"], "scrolls_filtered": got["scrolls_filtered"],
                     "probe": got["probe"]})
    Path(spec["out_dir"], f"{spec['name']}.summary.json").write_text(json.dumps(rows))


# ---------------------------------------------------------------- the orchestrator

def _items(task: str, results: dict, run_id: str) -> list:
    """What each instance of ``task`` gets from upstream (one item for an unmapped task)."""
    if task in MAPPED:
        return results[MAPPED[task]]
    if task == "write":  # over the run's write groups (dedupe recorded them); each picks its own results
        from ragtrail_airflow.rag.write_tasks import write_groups

        groups = write_groups(dag_run=SimpleNamespace(dag_id=DAG_ID, run_id=run_id))
        return [{"group": g, "results": {"chunk": results["chunk"], "embed": results["embed"]}} for g in groups]
    upstream = {"plan": {"docs": "ingest"}, "dedupe": {"chunked": "chunk"},
                "index": {"written": "write"}, "evaluate": {"indexed": "index"}}
    return [{arg: results[t] for arg, t in upstream[task].items()}] if task in upstream else [None]


def run_dag(home: Path, source: Path, run_id: str, log, fan: dict, before_tree: str | None = None) -> dict:
    """One DAG run, stage by stage, each stage's worker a fresh process; returns per-task figures.

    ``before_tree``: a source tree (``include/``, ``plugins/``) of an earlier ragtrail; its ``index`` task then
    also runs, on the same chunk and embed results, into a store folder of its own (``index_before``)."""
    out_dir = home / "xcom" / run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"source": str(source), "product": PRODUCT, "version": "v1", "promote": True, **fan}
    results: dict = {}
    tasks: dict = {}
    steps = [(t, t, {}) for t in TASKS]
    if before_tree:
        old = {"PYTHONPATH": f"{before_tree}/include:{before_tree}/plugins",
               "RAGTRAIL_QDRANT_PATH": str(home / "store_before")}
        steps.insert(TASKS.index("index") + 1, ("index_before", "index", old))
    for name, task, extra_env in steps:
        items = _items(task, results, run_id) if name != "index_before" else [
            {"chunked": results["chunk"], "embedded": results["embed"]}]
        mapped = task in MAPPED or task == "write"
        spec = {"name": name, "task": task, "items": items, "mapped": mapped, "run_id": run_id,
                "params": params, "out_dir": str(out_dir)}
        spec_path = out_dir / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "_worker", str(spec_path)], stdout=log, stderr=log,
                              env={**os.environ, **extra_env}, check=False)
        if proc.returncode:
            raise SystemExit(f"{name} failed: see {log.name}")
        rows = json.loads((out_dir / f"{name}.summary.json").read_text())
        outs = [json.loads((out_dir / f"{name}_{i:05d}.json").read_text())["result"] for i in range(len(items))]
        if name == task:
            results[task] = outs if mapped else outs[0]
        tasks[name] = {
            "instances": len(rows),
            "peak_rss_mb": round(max(r["rss_kb"] for r in rows) / 1024, 1),
            "wall_s": round(sum(r["wall_s"] for r in rows), 2),
            "worker_wall_s": round(time.perf_counter() - t0, 2),
            "max_xcom_bytes": max(r["xcom_bytes"] for r in rows),
            "scrolls_full": sum(r["scrolls_full"] for r in rows),
            "scrolls_filtered": sum(r["scrolls_filtered"] for r in rows),
        }
        if task in PROBED:
            tasks[name].update(npy_maps_max=max(r["probe"]["npy_maps_max"] for r in rows),
                               npy_rss_mb_max=round(max(r["probe"]["npy_rss_kb_max"] for r in rows) / 1024, 1),
                               rss_anon_written_mb=round(max(r["probe"]["rss_anon_kb_written"] for r in rows) / 1024, 1))
        extra = ({k: tasks[name][k] for k in ("npy_maps_max", "npy_rss_mb_max", "rss_anon_written_mb")}
                 if task in PROBED else "")
        print(f"    {name:12s} x{len(rows):<4d} rss {tasks[name]['peak_rss_mb']:8.1f} MB  wall {tasks[name]['wall_s']:8.1f} s"
              f"  xcom {tasks[name]['max_xcom_bytes']:>8d} B {extra}", flush=True)
    return {"tasks": tasks, "mlflow_runs": _mlflow_runs(run_id), "index": results["index"],
            "wall_s": round(sum(t["wall_s"] for n, t in tasks.items() if n != "index_before"), 2)}


def _mlflow_runs(run_id: str) -> int:
    """MLflow runs (parent and task runs) tagged with this DAG run's id, in the bench's store."""
    code = ("import sys\nimport mlflow\nfrom ragtrail.trail.names import RUN_TAG\nm = mlflow.MlflowClient()\n"
            "ids = [e.experiment_id for e in m.search_experiments()]\n"
            "runs = m.search_runs(ids, filter_string=f\"tags.`{RUN_TAG}` = '\" + sys.argv[1] + \"'\", max_results=50000)\n"
            "print(len(runs))\n")
    out = subprocess.run([sys.executable, "-c", code, run_id], capture_output=True, text=True, check=False)
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(out.stderr[-2000:], file=sys.stderr)
        return -1


def fit(ns: list[int], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b·n; (a, b)."""
    k = len(ns)
    mn, my = sum(ns) / k, sum(ys) / k
    sxx = sum((n - mn) ** 2 for n in ns)
    b = sum((n - mn) * (y - my) for n, y in zip(ns, ys, strict=True)) / sxx if sxx else 0.0
    return my - b * mn, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20000,80000,320000", help="documents per run, comma-separated")
    ap.add_argument("--reingest-share", type=float, default=0.001, help="share of documents changed/added/deleted")
    ap.add_argument("--home", default=str(REPO / ".data" / "bench-scale"), help="the bench's data folder")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.json"))
    ap.add_argument("--docs-per-batch", type=int, default=5000,
                    help="documents per chunk task (the DAG's default is 500: fewer, larger map indexes here, "
                         "for time; a mapped task's memory follows its batch, not N)")
    ap.add_argument("--texts-per-batch", type=int, default=8192, help="texts per embed task (the DAG's default: 2048)")
    ap.add_argument("--docs-per-shard", type=int, default=10_000,
                    help="source objects per ingest shard (the DAG's default, 10,000): an ingest task's memory "
                         "follows its shard, not N")
    ap.add_argument("--before-tree", default="",
                    help="an earlier ragtrail's source tree (include/, plugins/): its index task runs too, on the "
                         "same upstream results (index_before), e.g. from `git archive main include plugins`")
    ap.add_argument("--label", default="", help="a name for this run in the results (e.g. before/after)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    fan = {"docs_per_batch": args.docs_per_batch, "texts_per_batch": args.texts_per_batch,
           "docs_per_shard": args.docs_per_shard}
    runs = []
    for n in sizes:
        home = Path(args.home) / str(n)
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        os.environ.update({"RAGTRAIL_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home}/mlflow.db",
                           "HF_HUB_OFFLINE": "1"})
        for k in ("RAGTRAIL_WORK_URL", "RAGTRAIL_QDRANT_URL", "RAGTRAIL_QDRANT_PATH", "RAGTRAIL_WORK_DIR"):
            os.environ.pop(k, None)
        source = home / "corpus"
        t0 = time.perf_counter()
        make_corpus(source, n)
        print(f"== {n} documents (corpus written in {time.perf_counter() - t0:.0f} s); embedder: {EMBEDDER_NAME}",
              flush=True)
        with (home / "tasks.log").open("w") as log:
            first = run_dag(home, source, "build_1", log, fan, args.before_tree or None)
            row = {"docs": n, "first": first}
            if n == sizes[-1] and args.reingest_share > 0:
                row["change"] = change_corpus(source, n, args.reingest_share)
                print(f"  re-ingest: {row['change']}", flush=True)
                second = run_dag(home, source, "build_2", log, fan, args.before_tree or None)
                row["reingest"] = second
                row["reingest_share_of_first"] = round(second["wall_s"] / first["wall_s"], 4)
        runs.append(row)
        shutil.rmtree(source, ignore_errors=True)
    report = summarize(runs, sizes)
    if args.before_tree:
        report["before_tree"] = args.before_tree
    report.update(label=args.label, params=fan)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"\nwritten: {args.out}")


def summarize(runs: list[dict], sizes: list[int]) -> dict:
    slopes = {}
    for task in runs[0]["first"]["tasks"]:
        ys = [r["first"]["tasks"][task]["peak_rss_mb"] * 1024 * 1024 for r in runs]
        a, b = fit(sizes, ys) if len(sizes) > 1 else (ys[0], 0.0)
        slopes[task] = {"a_mb": round(a / 2**20, 1), "b_bytes_per_doc": round(b, 1), "pass": b < TARGET_B,
                        "rss_at_10M_mb_extrapolated": round((a + b * 10_000_000) / 2**20, 1)}
    for task in ("write", "index", "index_before"):
        if task in runs[0]["first"]["tasks"]:
            for key in ("rss_anon_written_mb", "npy_rss_mb_max"):
                ys = [r["first"]["tasks"][task][key] * 2**20 for r in runs]
                slopes[task][key.replace("_mb", "") + "_b_bytes_per_doc"] = round(fit(sizes, ys)[1], 1) if len(sizes) > 1 else 0.0
    last = runs[-1]
    out = {"embedder": EMBEDDER_NAME, "store": "edge (embedded default)", "work_store": "local folder (default)",
           "sizes": sizes, "runs": runs, "slopes": slopes,
           "target_b_bytes_per_doc": TARGET_B, "target_reingest_share": TARGET_REINGEST,
           "largest_xcom_bytes": max(t["max_xcom_bytes"] for r in runs for t in r["first"]["tasks"].values()),
           "mlflow_runs_per_dag_run": {r["docs"]: r["first"]["mlflow_runs"] for r in runs},
           "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    if "reingest" in last:
        share = last["reingest_share_of_first"]
        out["reingest"] = {"docs": last["docs"], "change": last["change"], "wall_s": last["reingest"]["wall_s"],
                           "first_wall_s": last["first"]["wall_s"], "share_of_first": share,
                           "pass": share <= TARGET_REINGEST,
                           "scrolls_full": sum(t["scrolls_full"] for k, t in last["reingest"]["tasks"].items()
                                               if k != "index_before"),
                           "scrolls_filtered": sum(t["scrolls_filtered"] for k, t in last["reingest"]["tasks"].items()
                                                   if k != "index_before"),
                           "per_task_wall_s": {k: v["wall_s"] for k, v in last["reingest"]["tasks"].items()},
                           "per_task_scrolls": {k: [v["scrolls_full"], v["scrolls_filtered"]]
                                                for k, v in last["reingest"]["tasks"].items()}}
    return out


def print_table(rep: dict) -> None:
    sizes = rep["sizes"]
    print(f"\nembedder: {rep['embedder']}; store: {rep['store']}; {rep.get('params')}")
    head = "task        " + "".join(f" {'rss MB @' + str(n):>16s} {'wall s':>8s}" for n in sizes)
    head += f" {'b B/doc':>9s} {'<50?':>5s} {'max XCom B':>11s}"
    print(head)
    for task in rep["slopes"]:
        line = f"{task:12s}"
        for r in rep["runs"]:
            t = r["first"]["tasks"][task]
            line += f" {t['peak_rss_mb']:16.1f} {t['wall_s']:8.1f}"
        s = rep["slopes"][task]
        xc = max(r["first"]["tasks"][task]["max_xcom_bytes"] for r in rep["runs"])
        line += f" {s['b_bytes_per_doc']:9.1f} {'pass' if s['pass'] else 'FAIL':>5s} {xc:11d}"
        print(line)
    for task in ("write", "index_before"):
        if task in rep["slopes"] and "rss_anon_written_b_bytes_per_doc" in rep["slopes"][task]:
            sl = rep["slopes"][task]
            print(f"{task}: anonymous RSS after the last upsert b = {sl['rss_anon_written_b_bytes_per_doc']} B/doc "
                  f"(Python heap + the in-process Edge store); .npy pages resident b = "
                  f"{sl['npy_rss_max_b_bytes_per_doc']} B/doc")
    print(f"largest XCom: {rep['largest_xcom_bytes']} B; MLflow runs per DAG run: {rep['mlflow_runs_per_dag_run']}")
    if "reingest" in rep:
        ri = rep["reingest"]
        print(f"re-ingest at {ri['docs']} docs, {ri['change']['total']} changed/added/deleted: {ri['wall_s']:.1f} s = "
              f"{ri['share_of_first'] * 100:.1f} % of the first build ({ri['first_wall_s']:.1f} s; target ≤ 5 %: "
              f"{'pass' if ri['pass'] else 'FAIL'}); store scrolls: {ri['scrolls_full']} whole-collection, "
              f"{ri['scrolls_filtered']} filtered")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_worker":
        worker(sys.argv[2])
    else:
        main()
