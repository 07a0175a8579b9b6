"""Run one function in a fresh Python process, so that what it imports and the memory it peaks at stay out of
the caller (an Airflow task process, or ``ragtrail ingest``'s one process).

Used for the one-time jobs that need torch: the ONNX export of the embedder and MLflow's copy of the
sentence-transformers model. Their peak (torch, transformers, the fp32 weights, the ONNX graphs) then ends with
the child, and the embed path of the ONNX backends never imports torch (docs/performance.md, "Memory").

Example::

    call_in_child("ragtrail.stages.onnx_backend:make_file", model_path, recipe_fields, base, out)
"""

from __future__ import annotations

import json
import subprocess
import sys

_RUN = ("import importlib, json, sys; mod, fn = sys.argv[1].split(':'); "
        "getattr(importlib.import_module(mod), fn)(*json.loads(sys.argv[2]))")


def call_in_child(target: str, *args) -> None:
    """Call ``module:function`` with the JSON-serialisable ``args`` in a child interpreter (same ``sys.executable``,
    same environment); raise ``RuntimeError`` with the end of its stderr if it fails."""
    proc = subprocess.run([sys.executable, "-c", _RUN, target, json.dumps(list(args))],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{target} failed in a child process (exit {proc.returncode}): {proc.stderr[-2000:]}")
