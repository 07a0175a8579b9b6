"""The ONNX Runtime embedding backends ``onnx-int8`` (the default) and ``onnx-fp32``: the same model, exported.

The bundled (or local) sentence-transformers model is exported offline with ``torch.onnx.export`` (the *base*
export); each backend derives its own file from it by a :class:`Recipe`: ONNX Runtime's transformer optimizer
(the BERT fusions: attention, embedding + LayerNorm, skip-LayerNorm, bias-GELU) and, for ``onnx-int8``, dynamic
int8 quantisation of chosen op types, per channel. :mod:`ragtrail.stages.onnx_export` makes the files, never in
the process that embeds: ``make install`` writes the default backend's into the environment
(:func:`prepared_dir`); any other is made once by one child process into ``<RAGTRAIL_HOME>/models/`` (or
``RAGTRAIL_MODEL_CACHE``), in a folder named by the recipe, so changing a recipe never reuses a stale file.
Inference runs in ONNX Runtime on the CPU with the model's own tokenizer and pooling, with as many
threads as the CPUs the process may really use (:func:`ragtrail.core.cpus.usable_cpus`): this module imports
neither torch nor transformers nor onnx.
sentence-transformers' own ONNX backend needs ``optimum``, whose releases pin an older ``transformers``;
this needs only ``onnxruntime`` and ``onnx`` (and torch + transformers once, in the exporting child).

Example::

    model = load_onnx(resolve_model_path("all-MiniLM-L6-v2"), "onnx-int8")
    vectors = model.encode(["how do retries work?"], normalize_embeddings=True)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ragtrail.core import env_kit
from ragtrail.core.cpus import usable_cpus
from ragtrail.core.locks import file_lock
from ragtrail.core.settings import ragtrail_home
from ragtrail.stages.onnx_export import BASE_TAG, ONNX_FILE, Recipe, export_in_child, make

__all__ = ["BASE_TAG", "ONNX_FILE", "RECIPES", "Recipe", "load_onnx", "onnx_file", "prepare", "prepared_dir"]


# The backends a product can name (spec field ``embed_backend``). onnx-int8 quantises the MatMul weights only,
# per channel, after the fusions: the fused attention keeps its QKV projection in fp32 (quantising it too
# costs nDCG@10 on the labelled sets; see docs/performance.md, "Embedding backends").
RECIPES: dict[str, Recipe] = {
    "onnx-fp32": Recipe(optimize=True),
    "onnx-int8": Recipe(optimize=True, quantize=("MatMul",)),
}


class OnnxEmbedder:
    """A minimal ``SentenceTransformer.encode`` look-alike over an ONNX Runtime session."""

    device = "cpu"

    def __init__(self, model_path: str, onnx_path: Path, threads: int | None = None, spin: bool | None = None,
                 max_batch: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        path = Path(model_path)
        config = path / "sentence_bert_config.json"
        self.max_seq_length = int(json.loads(config.read_text())["max_seq_length"]) if config.exists() else 512
        # tokenizer.json directly (as transformers' fast tokenizer does), so that embedding with this
        # backend never imports transformers or torch.
        if (path / "tokenizer.json").is_file():
            self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        else:  # a model from the local HF cache, named rather than a folder
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(model_path).backend_tokenizer
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.no_padding()  # encode() pads each batch itself, to that batch's longest text
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.pooling = _pooling_mode(path)
        self.session = ort.InferenceSession(str(onnx_path), session_options(threads, spin),
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.max_batch = max_batch or env_kit.ONNX_BATCH.get()
        self.dimension = int(self.session.get_outputs()[0].shape[-1])

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int = 64, normalize_embeddings: bool = True, **_ignored):
        """Embed ``texts``: tokenised once, then batched by token count (longest first), so a batch pads
        only to its own longest text; at most ``max_batch`` (``RAGTRAIL_ONNX_BATCH``) texts per session run."""
        import numpy as np

        batch_size = max(1, min(batch_size, self.max_batch))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        encs = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encs], kind="stable")
        for i in range(0, len(texts), batch_size):
            idx = order[i : i + batch_size]
            width = len(encs[idx[0]].ids)
            enc = {k: np.zeros((len(idx), width), dtype=np.int64) for k in ("input_ids", "attention_mask",
                                                                               "token_type_ids")}
            if self.pad_id:
                enc["input_ids"].fill(self.pad_id)
            for row, j in enumerate(idx):
                e = encs[j]
                n = len(e.ids)
                enc["input_ids"][row, :n] = e.ids
                enc["attention_mask"][row, :n] = e.attention_mask
                enc["token_type_ids"][row, :n] = e.type_ids
            hidden = self.session.run(None, {k: enc[k] for k in self.inputs})[0]
            if self.pooling == "cls":
                vec = hidden[:, 0]
            else:
                mask = enc["attention_mask"][..., None].astype(np.float32)
                vec = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            if normalize_embeddings:
                vec = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
            out[idx] = vec
        return out


def session_options(threads: int | None = None, spin: bool | None = None):
    """ONNX Runtime options: ``threads`` intra-op threads (``RAGTRAIL_ONNX_THREADS``, else the usable CPUs),
    one inter-op thread, spinning per ``RAGTRAIL_ONNX_SPIN`` (off by default: see docs/performance.md)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or env_kit.ONNX_THREADS.get() or usable_cpus()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = env_kit.ONNX_SPIN.get() if spin is None else spin
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


def _pooling_mode(path: Path) -> str:
    """``mean`` or ``cls`` from the model's pooling config (mean when there is none)."""
    configs = list(path.glob("*_Pooling/config.json"))
    if not configs:
        return "mean"
    cfg = json.loads(configs[0].read_text())
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    raise ValueError(f"the ONNX backends support mean or CLS pooling models only; {path} uses {cfg}")


def model_cache() -> Path:
    """Where exports are cached: the data folder's ``models/``, or ``RAGTRAIL_MODEL_CACHE``, which lets data
    folders share one export (it is the same for the same model)."""
    return (env_kit.MODEL_CACHE.get() or ragtrail_home() / "models").expanduser()


def prepared_dir() -> Path:
    """Where ``make install`` (``python -m ragtrail.stages.onnx_export prepare``) puts the default backend's file:
    ``<sys.prefix>/share/ragtrail/models``, inside the environment, read-only to runs."""
    return Path(sys.prefix) / "share" / "ragtrail" / "models"


def file_stem(model_path: str) -> str:
    """The model's part of an export's folder name: its folder name and a digest of its resolved path."""
    key = hashlib.sha256(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    return f"{Path(model_path).name}-{key}"


def onnx_file(model_path: str, recipe: Recipe) -> Path:
    """The ONNX file of ``model_path`` made by ``recipe``: the prepared one (:func:`prepared_dir`), else the one
    cached under :func:`model_cache`, else exported and built into the cache once, by one child process."""
    stem = file_stem(model_path)
    prepared = prepared_dir() / f"{stem}-{recipe.tag}" / ONNX_FILE
    if prepared.is_file():
        return prepared
    cache = model_cache()
    base, out = cache / f"{stem}-{BASE_TAG}" / ONNX_FILE, cache / f"{stem}-{recipe.tag}" / ONNX_FILE
    if out.exists():
        return out
    with file_lock(cache / f".{stem}.lock"):  # one exporter; the others wait and reuse
        if not out.exists():
            export_in_child(model_path, recipe, base, out)
    return out


def prepare(model_path: str, backend: str) -> Path:
    """Write ``backend``'s ONNX file of the model folder ``model_path`` into :func:`prepared_dir` unless it is
    there (in this process: ``make install`` runs it, never a pipeline); return its path."""
    import tempfile

    recipe = RECIPES[backend]
    stem = file_stem(model_path)
    out = prepared_dir() / f"{stem}-{recipe.tag}" / ONNX_FILE
    if not out.exists():
        with tempfile.TemporaryDirectory() as tmp:  # the base export is not kept: only the backend's file ships
            make(model_path, recipe, Path(tmp) / f"{stem}-{BASE_TAG}" / ONNX_FILE, out)
    return out


def load_onnx(model_path: str, backend: str = "onnx-int8", *, recipe: Recipe | None = None,
              threads: int | None = None, spin: bool | None = None, max_batch: int | None = None) -> OnnxEmbedder:
    """The embedder of ``backend`` (a key of :data:`RECIPES`), or of an explicit ``recipe`` (the bench's)."""
    if recipe is None:
        if backend not in RECIPES:
            raise ValueError(f"unknown ONNX backend {backend!r}; one of {', '.join(RECIPES)}")
        recipe = RECIPES[backend]
    return OnnxEmbedder(model_path, onnx_file(model_path, recipe), threads=threads, spin=spin, max_batch=max_batch)
