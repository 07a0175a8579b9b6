"""The embedder's MLflow copy: the model folder's files in the sentence-transformers flavor's layout, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from ragtrail.models.registration import EMBEDDER_ST_VERSION
from ragtrail.stages.embedding import resolve_model_path

TEXTS = ["How do retries work?", "Qdrant aliases switch collections atomically.", "ok"]


def test_the_embedder_copy_is_the_flavors_model_without_loading_torch(tmp_path):
    """Defect: logging the embedder loaded the sentence-transformers model in the task process to re-save it
    (torch +0.44 GB, never given back). save_embedder copies the folder instead, importing no torch, and the
    result is what ``mlflow.sentence_transformers.save_model`` writes: the same flavors, requirements and
    signature; both loaders give the model's own vectors."""
    import mlflow.pyfunc
    import mlflow.sentence_transformers
    from sentence_transformers import SentenceTransformer

    model_path = resolve_model_path("all-MiniLM-L6-v2")
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    requirements = [f"sentence-transformers=={EMBEDDER_ST_VERSION}"]
    script = ("import json, sys\n"
              "from pathlib import Path\n"
              "from ragtrail.models.registration import save_embedder\n"
              f"save_embedder({model_path!r}, Path({str(mine)!r}), {requirements!r})\n"
              "print(json.dumps([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []

    reference = SentenceTransformer(model_path)
    mlflow.sentence_transformers.save_model(reference, str(theirs), pip_requirements=requirements)
    ours, ref = (yaml.safe_load((p / "MLmodel").read_text()) for p in (mine, theirs))
    assert ours["flavors"] == ref["flavors"] and ours["signature"] == ref["signature"], (ours, ref)
    for name in ("requirements.txt", "conda.yaml", "python_env.yaml"):
        assert (mine / name).read_text() == (theirs / name).read_text(), name
    assert sorted(p.name for p in (mine / "model.sentence_transformer").glob("*.safetensors")) == ["model.safetensors"]

    expected = reference.encode(TEXTS, normalize_embeddings=True)
    loaded = mlflow.sentence_transformers.load_model(str(mine))
    assert np.allclose(loaded.encode(TEXTS, normalize_embeddings=True), expected, atol=1e-5)
    assert np.allclose(np.asarray(mlflow.pyfunc.load_model(str(mine)).predict(TEXTS)), expected, atol=1e-5)
    assert not any(Path(mine).rglob(".git*"))  # the package's hidden files stay behind
