"""Where ``ragtrail ingest``'s resident memory goes: step-wise imports, then the run sampled per stage.

Two modes, each in a fresh process so that nothing is shared:

- ``steps``: RSS (``VmRSS``) and peak (``VmHWM``) after importing Airflow, MLflow, parsing the DAG file, then
  the embed path piece by piece (onnxruntime, the tokenizer, the ONNX session, one 256-text batch);
  whether torch / transformers / sentence_transformers got imported on the way.
- ``ingest``: ``ragtrail ingest`` in-process (as the ``ragtrail`` script runs it) with a sampler thread
  that reads ``VmRSS`` every 50 ms and the innermost ``ragtrail.stages`` / ``ragtrail.sources`` frame of the
  main thread, giving each stage's peak RSS, plus the process's peak (``ru_maxrss``) and the modules loaded.

Example::

    python bench/memory.py steps
    python bench/memory.py ingest -- --source CORPUS --product p --json
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MB, from /proc/self/status."""
    vals = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                vals[key] = int(kb) / 1024
    return vals["VmRSS:"], vals["VmHWM:"]


def heavy_modules() -> list[str]:
    return [m for m in ("torch", "transformers", "sentence_transformers", "mlflow", "airflow", "onnxruntime",
                        "onnx", "pandas", "pyarrow", "sklearn", "scipy") if m in sys.modules]


def steps() -> list[dict]:
    rows = []

    def mark(label):
        cur, peak = rss_mb()
        rows.append({"step": label, "rss_mb": round(cur), "peak_mb": round(peak), "modules": heavy_modules()})

    mark("python")
    import airflow  # noqa: F401
    from airflow.sdk import DAG  # noqa: F401

    mark("import airflow (+ sdk)")
    import mlflow  # noqa: F401

    mark("import mlflow")
    from ragtrail.cli.airflow_home import prepare

    prepare()
    from airflow import settings as af_settings
    from airflow.dag_processing.dagbag import DagBag

    from ragtrail.core import settings as rt_settings

    if af_settings.Session is None:
        af_settings.configure_orm()
    DagBag(dag_folder=str(rt_settings.DAGS_FOLDER))
    mark("parse the DAG folder (DagBag)")
    import onnxruntime  # noqa: F401

    mark("import onnxruntime")
    from ragtrail.stages.embedding import load_model, load_tokenizer

    load_tokenizer()
    mark("tokenizer (tokenizers)")
    model = load_model("all-MiniLM-L6-v2", "onnx-int8")
    mark("ONNX int8 session")
    texts = [("a moderately long sentence about write-ahead logging and vacuum " * 6)[:1000]] * 256
    model.encode(texts, batch_size=32)
    mark("embed 256 texts of 1,000 chars")
    return rows


def ingest(argv: list[str]) -> dict:
    from ragtrail.cli.main import main as cli_main

    main_id = threading.get_ident()
    stages: dict[str, float] = {}
    timeline: list[tuple[float, float, str]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def where() -> str:
        frame = sys._current_frames().get(main_id)
        inner = "other"
        while frame is not None:
            name = frame.f_globals.get("__name__", "")
            if name.startswith(("ragtrail.stages.", "ragtrail.sources.", "ragtrail.store.", "ragtrail.trail.")):
                inner = name.split(".", 2)[2] if name.count(".") >= 2 else name
                break  # outermost first? no: f_back walks outwards, so the first hit is the innermost
            frame = frame.f_back
        return inner

    def sample():
        while not stop.is_set():
            cur, _ = rss_mb()
            stage = where()
            stages[stage] = max(stages.get(stage, 0.0), cur)
            timeline.append((round(time.perf_counter() - t0, 2), round(cur), stage))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    rc = cli_main(["ingest", *argv])
    stop.set()
    thread.join()
    return {"rc": rc, "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "stage_peak_mb": {k: round(v) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
            "modules": heavy_modules(), "samples": len(timeline), "timeline": timeline[::10]}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "steps":
        out = steps()
    else:
        args = sys.argv[2:]
        out = ingest(args[1:] if args[:1] == ["--"] else args)
    print(json.dumps(out), file=sys.__stdout__)
