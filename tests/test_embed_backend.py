"""The ONNX embedding backends (onnx-int8 the default): fused, close to fp32, cached, usable end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, ingest, write_corpus

from ragtrail.core.settings import load
from ragtrail.stages.embedding import embed_texts
from ragtrail.stages.onnx_backend import RECIPES, model_cache, onnx_file, prepared_dir

TEXTS = [
    "A task that fails is retried after the retry delay, up to its number of retries.",
    "XCom is for small values; hand large data between tasks as files in object storage.",
    "The MLflow tracking server stores runs in a backend store and files in an artifact store.",
    "Qdrant keeps points with a vector and a payload in collections; aliases point at collections.",
    "Sourdough rises overnight in a cool kitchen before it is baked in a hot oven.",
    "Die Aufgabe wird nach einer Verzögerung erneut ausgeführt.",
    "ok",
]


# The bound docs/performance.md documents for the default backend against fp32 (measured: mean 0.992, min 0.980
# on these texts; mean 0.994 on 470 PostgreSQL-manual chunks).
INT8_COS_MEAN, INT8_COS_MIN = 0.99, 0.97


def test_onnx_int8_vectors_are_close_to_fp32():
    """onnx-int8 vectors have fp32's dimension, unit length and stay within the documented cosine bound of fp32."""
    fp32 = embed_texts(TEXTS, backend="torch")
    int8 = embed_texts(TEXTS, backend="onnx-int8")
    assert int8.shape == fp32.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.mean() >= INT8_COS_MEAN and cosine.min() >= INT8_COS_MIN, cosine
    # The file make install prepared in the venv, else the cache the session shares (conftest; a parallel run's
    # workers share the controller's): a worker's own data folder holds no export when another worker made it first.
    from ragtrail.stages.embedding import resolve_model_path

    used = onnx_file(resolve_model_path("all-MiniLM-L6-v2"), RECIPES["onnx-int8"])
    assert used.is_file() and used.parents[1] in (prepared_dir(), model_cache()), used


def test_onnx_fp32_is_the_fp32_model():
    """onnx-fp32 (the optimised graph, fused ops) gives torch's vectors: the fusions change no arithmetic that
    matters."""
    fp32 = embed_texts(TEXTS, backend="torch")
    onnx32 = embed_texts(TEXTS, backend="onnx-fp32")
    assert (fp32 * onnx32).sum(axis=1).min() >= 0.9999


@pytest.mark.parametrize("backend", ["onnx-fp32", "onnx-int8"])
def test_the_onnx_backends_run_the_fused_bert_graph(backend):
    """The transformer optimizer ran before quantisation: the cached graph holds one fused attention per layer
    (6 in MiniLM-L6), skip-LayerNorms, the fused embedding LayerNorm and bias-GELU, and no unfused Softmax."""
    import onnx

    from ragtrail.stages.embedding import resolve_model_path
    from ragtrail.stages.onnx_backend import onnx_file

    graph = onnx.load(str(onnx_file(resolve_model_path("all-MiniLM-L6-v2"), RECIPES[backend]))).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["Attention"] == 6 and ops["SkipLayerNormalization"] == 12, ops
    assert ops["EmbedLayerNormalization"] == 1 and ops["BiasGelu"] == 6 and ops["Softmax"] == 0, ops
    if backend == "onnx-int8":  # the FFN and attention-output weights are int8, the QKV projection stays fp32
        assert ops["MatMulInteger"] == 6 * 3 and ops["DynamicQuantizeLinear"] > 0, ops
    else:
        assert ops["MatMulInteger"] == 0, ops


def test_session_threads_follow_the_usable_cpus(tmp_path, monkeypatch):
    """Defect: the session took os.cpu_count() threads, the host's CPUs, not the container's quota. It now takes
    the usable CPUs (affinity, capped by the cgroup quota), RAGTRAIL_ONNX_THREADS when set, spinning off."""
    from ragtrail.core import cpus
    from ragtrail.stages.onnx_backend import session_options

    monkeypatch.delenv("RAGTRAIL_ONNX_THREADS", raising=False)
    monkeypatch.delenv("RAGTRAIL_ONNX_SPIN", raising=False)
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one CPU's worth of quota
    monkeypatch.setattr(cpus, "CGROUP_ROOT", tmp_path)
    opts = session_options()
    assert opts.intra_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert session_options().intra_op_num_threads == len(os.sched_getaffinity(0))
    monkeypatch.setenv("RAGTRAIL_ONNX_THREADS", "3")
    monkeypatch.setenv("RAGTRAIL_ONNX_SPIN", "on")
    opts = session_options()
    assert opts.intra_op_num_threads == 3
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """Product ``fast`` built with the onnx-int8 backend (two documents)."""
    corpus = write_corpus(tmp_path_factory.mktemp("fast") / "fast", {
        "retries.md": "# Retries\n\nA failed task is retried after retry_delay, up to `retries` times.",
        "baking.md": "# Bread\n\nSourdough rises overnight and is baked in a very hot oven.",
    })
    run = ingest({"source": str(corpus), "product": "fast", "embed_backend": "onnx-int8"})
    return corpus, run


def test_pipeline_with_onnx_backend_builds_a_searchable_version(fast_run):
    """embed_backend=onnx-int8 runs the DAG end to end, is part of the version config, and search uses it."""
    from ragtrail.stages.search import search
    from ragtrail.store import open_store

    corpus, run = fast_run
    assert run["status"] == "FINISHED", run
    assert run["embeddings"] > 0 and run["vectors"] == run["chunks"]
    with open_store(load().qdrant_path) as store:
        meta = store.metadata("fast__v1")
    assert meta["embed_backend"] == "onnx-int8"
    hits = search("fast", "how often is a failing task tried again?", location=load().qdrant_path, k=2)
    assert hits[0]["doc_id"] == "retries.md"
    mixed = ingest({"source": str(corpus), "product": "fast", "embed_backend": "torch"})
    assert mixed["status"] == "FAILED"
    assert any("a new configuration needs a new version" in r for r in mixed["reasons"]), mixed["reasons"]


def test_evaluation_embeds_questions_with_the_collections_backend(fast_run, tmp_path, monkeypatch):
    """Defect 1: the gate embedded questions with torch for an onnx-int8 collection, judging vectors that no
    user query ever gets. Every question the evaluate stage embeds now uses the collection's backend."""
    import ragtrail.stages.embedding
    from ragtrail.stages.gate import evaluate_and_promote

    corpus, run = fast_run
    assert run["status"] == "FINISHED", run
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"id": "q1", "text": "how often is a task retried?", "relevant": ["retries.md"]}) + "\n")
    backends = []
    real = ragtrail.stages.embedding.embed_texts

    def spy(texts, embedder=ragtrail.stages.embedding.DEFAULT_EMBEDDER, batch_size=ragtrail.stages.embedding.DEFAULT_BATCH_SIZE,
            backend="torch"):
        backends.append(backend)
        return real(texts, embedder, batch_size, backend=backend)

    monkeypatch.setattr(ragtrail.stages.embedding, "embed_texts", spy)
    decision = evaluate_and_promote(location=load().qdrant_path, product="fast", version="v1", queries_path=queries,
                                    promote=False)
    assert decision["metrics"]["hit_rate"] == 1.0
    assert backends and set(backends) == {"onnx-int8"}, backends


def test_a_texts_vector_does_not_depend_on_its_batch():
    """encode() tokenises once and pads each batch to its own longest text: a short text embedded beside long
    ones (padded) or alone (not) gets the same fp32 vector, in any order."""
    from ragtrail.stages.embedding import load_model

    model = load_model(backend="onnx-fp32")
    alone = model.encode(["ok"], batch_size=64)
    mixed = model.encode([TEXTS[2], "ok", TEXTS[0] * 3], batch_size=3)  # one batch: both padded
    assert np.allclose(mixed[1], alone[0], atol=1e-5)
    assert np.allclose(mixed[0], model.encode([TEXTS[2]])[0], atol=1e-5)


def test_a_large_batch_is_split_into_onnx_batch_runs(monkeypatch):
    """RAGTRAIL_ONNX_BATCH (16 by default, the measured best on CPU) caps the texts per session run: a product's
    batch_size of 64 becomes runs of 16, with the same vectors."""
    from ragtrail.stages.embedding import load_model

    model = load_model(backend="onnx-int8")
    assert model.max_batch == 16
    runs = []
    real = model.session

    class Counting:
        def run(self, outputs, feeds):
            runs.append(len(feeds["input_ids"]))
            return real.run(outputs, feeds)

    texts = [f"{TEXTS[i % len(TEXTS)]} ({i})" for i in range(40)]
    monkeypatch.setattr(model, "session", Counting())
    split = model.encode(texts, batch_size=64)
    assert runs == [16, 16, 8]
    monkeypatch.setattr(model, "max_batch", 64)
    whole = model.encode(texts, batch_size=64)
    assert runs[3:] == [40]
    # Dynamic int8 quantises activations with one scale per run, so a text's vector depends a little on its
    # batch-mates (cosine down to 0.97 between the two here); both stay within the bound of fp32.
    fp32 = load_model(backend="onnx-fp32").encode(texts, batch_size=64)
    for vecs in (split, whole):
        assert (vecs * fp32).sum(axis=1).mean() >= INT8_COS_MEAN


HEAVY = ("torch", "transformers", "sentence_transformers", "onnx")


@pytest.fixture(scope="module")
def prepared():
    """The default backend's file in the venv, as ``make install`` leaves it (made here when missing)."""
    proc = subprocess.run([sys.executable, "-m", "ragtrail.stages.embedding", "prepare"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parents[1] == prepared_dir()
    return path


def test_a_cold_ingest_never_loads_torch(prepared, tmp_path):
    """Defect: a fresh data folder's first run exported the model (torch, transformers, onnx: +0.8 GB, never given
    back) and loaded the sentence-transformers model to log the embedder to MLflow (+0.44 GB), in the ingest
    process. With the prepared file, the whole cold run (an empty model cache, a new MLflow store) imports none
    of them, exports nothing, and still logs an embedder copy that loads back and embeds as the model does."""
    import mlflow.pyfunc

    from ragtrail.stages.embedding import embed_texts

    home, cache = tmp_path / "home", tmp_path / "cache"
    script = ("import json, sys\n"
              "from ragtrail.cli.main import main\n"
              f"rc = main(['ingest', '--source', {str(REPO / 'include' / 'sample_corpus')!r}, '--product', 'cold', '--json'])\n"
              f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
              "from mlflow.tracking import MlflowClient\n"
              "from ragtrail.core.settings import load\n"
              "client = MlflowClient(load().mlflow_tracking_uri)\n"
              "exp = client.get_experiment_by_name(load().experiment_prefix + '/_embedders')\n"
              "runs = client.search_runs([exp.experiment_id]) if exp else []\n"
              "print(json.dumps({'rc': rc, 'heavy': heavy, 'tracking': load().mlflow_tracking_uri,\n"
              "                  'embedders': [r.info.artifact_uri + '/model' for r in runs]}))\n")
    env = {**os.environ, "RAGTRAIL_HOME": str(home), "RAGTRAIL_MODEL_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and out["heavy"] == [], out
    assert not any(cache.rglob("*.onnx")), list(cache.rglob("*"))  # the prepared file served; nothing exported
    assert len(out["embedders"]) == 1, out
    # by its artifact location, not runs:/ (another test of this worker may have set mlflow's tracking URI)
    model = mlflow.pyfunc.load_model(out["embedders"][0])
    vectors = np.asarray(model.predict(TEXTS[:3]))
    assert np.allclose(vectors, embed_texts(TEXTS[:3], backend="torch"), atol=1e-5)


def test_a_missing_onnx_file_is_exported_by_one_child(tmp_path):
    """Neither prepared nor cached: the file is exported and built once, by one child interpreter, into the model
    cache; this process imports neither torch nor onnx, and the next look-up reuses the file."""
    script = ("import json, subprocess, sys\n"
              "from pathlib import Path\n"
              "from ragtrail.stages import onnx_backend as ob\n"
              "from ragtrail.stages.embedding import resolve_model_path\n"
              f"ob.prepared_dir = lambda: Path({str(tmp_path / 'none')!r})\n"
              "children, real = [], subprocess.run\n"
              "def counting(cmd, *a, **k):\n"
              "    children.append(cmd)\n"
              "    return real(cmd, *a, **k)\n"
              "subprocess.run = counting\n"
              "path = resolve_model_path('all-MiniLM-L6-v2')\n"
              "first = ob.onnx_file(path, ob.RECIPES['onnx-fp32'])\n"
              "again = ob.onnx_file(path, ob.RECIPES['onnx-fp32'])\n"
              "vec = ob.load_onnx(path, 'onnx-fp32').encode(['ok'])\n"
              f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
              "print(json.dumps({'first': str(first), 'again': str(again), 'children': len(children),\n"
              "                  'heavy': heavy, 'dim': int(vec.shape[1])}))\n")
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "RAGTRAIL_MODEL_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["children"] == 1 and out["heavy"] == [] and out["dim"] == 384, out
    assert out["first"] == out["again"] and Path(out["first"]).is_file()
    assert Path(out["first"]).parents[1] == cache
