"""The embed path of the ONNX backends stays free of torch: the one-time export and MLflow's copy of the
sentence-transformers model run in child processes (ragtrail.core.child), so their ~1 GB never enters the
task's process (docs/performance.md, "Memory: where the RSS goes")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragtrail.core.child import call_in_child

PROBE = """
import json, sys
from mlflow import MlflowClient
from ragtrail.core.settings import load
from ragtrail.models.registration import log_embedder
from ragtrail.stages.embedding import embed_texts

vectors = embed_texts(["how do retries work?", "vacuum reclaims storage"], backend="onnx-int8")
client = MlflowClient(load().mlflow_tracking_uri)
uri = log_embedder(client, "all-MiniLM-L6-v2")
run_id = uri.split("/")[1]
print(json.dumps({"heavy": [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules],
                  "shape": list(vectors.shape), "uri": uri,
                  "artifacts": [a.path for a in client.list_artifacts(run_id, "model")]}))
"""


def test_onnx_embedding_from_a_cold_cache_and_logging_the_embedder_never_import_torch(tmp_path):
    env = {**os.environ, "RAGTRAIL_HOME": str(tmp_path / "home"), "RAGTRAIL_MODEL_CACHE": str(tmp_path / "models")}
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []  # the export (torch) and save_model (sentence-transformers) ran in children
    assert out["shape"] == [2, 384]
    assert any(p.endswith("MLmodel") for p in out["artifacts"]), out["artifacts"]
    assert list((tmp_path / "models").glob("*-onnx-opt-int8-*/model.onnx"))  # the child built the cached file


def test_a_failing_child_raises_with_its_stderr():
    with pytest.raises(RuntimeError, match="no_such_function"):
        call_in_child("ragtrail.core.child:no_such_function")
