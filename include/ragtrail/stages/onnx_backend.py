"""The ONNX Runtime embedding backends ``onnx-int8`` (the default) and ``onnx-fp32``: the same model, exported.

At first use the bundled (or local) sentence-transformers model is exported offline with
``torch.onnx.export`` (the *base* export, cached once per model); each backend then derives its own file
from it by a :class:`Recipe`: ONNX Runtime's transformer optimizer (the BERT fusions: attention,
embedding + LayerNorm, skip-LayerNorm, bias-GELU) and, for ``onnx-int8``, dynamic int8 quantisation of
chosen op types, per channel. Every file is cached under ``<RAGTRAIL_HOME>/models/`` (or
``RAGTRAIL_MODEL_CACHE``) in a folder named by the recipe, so changing a recipe never reuses a stale file.
Inference runs in ONNX Runtime on the CPU with the model's own tokenizer and pooling, with as many
threads as the CPUs the process may really use (:func:`ragtrail.core.cpus.usable_cpus`).
sentence-transformers' own ONNX backend needs ``optimum``, whose releases pin an older ``transformers``;
this module needs only ``onnxruntime`` and ``onnx`` (and torch + transformers once, for the export).

Example::

    model = load_onnx(resolve_model_path("all-MiniLM-L6-v2"), "onnx-int8")
    vectors = model.encode(["how do retries work?"], normalize_embeddings=True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ragtrail.core import env_kit
from ragtrail.core.cpus import usable_cpus
from ragtrail.core.locks import file_lock
from ragtrail.core.settings import ragtrail_home

ONNX_FILE = "model.onnx"
BASE_TAG = "onnx-base"  # the plain fp32 export every recipe starts from


@dataclass(frozen=True)
class Recipe:
    """How a backend's ONNX file is made from the base export.

    Attributes:
        optimize: run ONNX Runtime's transformer optimizer (``model_type="bert"``) first.
        fuse_attention: with ``optimize``, fuse each layer's attention into one ``Attention`` op (whose QKV
            projection dynamic quantisation of ``MatMul`` then leaves in fp32); off: the other fusions only.
        quantize: op types whose weights are quantised to int8 (dynamic quantisation); empty: fp32.
        per_channel: one int8 scale per output channel rather than per tensor.
        reduce_range: 7-bit weights (avoids int16 overflow in the u8s8 kernels of CPUs without VNNI).
        keep_fp32: layer indices (0-based encoder layers) left in fp32.
    """

    optimize: bool = True
    fuse_attention: bool = True
    quantize: tuple[str, ...] = ()
    per_channel: bool = True
    reduce_range: bool = False
    keep_fp32: tuple[int, ...] = ()

    @property
    def tag(self) -> str:
        """The cache folder's suffix: readable, and unique per recipe."""
        parts = ["onnx", ("opt" if self.fuse_attention else "opt-noattn") if self.optimize else "plain"]
        if self.quantize:
            parts += ["int8", "+".join(sorted(op.lower() for op in self.quantize)),
                      "pc" if self.per_channel else "pt"]
            if self.reduce_range:
                parts.append("rr")
            if self.keep_fp32:
                parts.append("keep" + "+".join(map(str, self.keep_fp32)))
        else:
            parts.append("fp32")
        return "-".join(parts)


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


def export_base(model_path: str, out: Path) -> Path:
    """Export ``model_path``'s transformer (fp32, eager attention: the pattern the optimizer fuses) to ``out``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()
    sample = tokenizer(["an example sentence", "another, longer example sentence"], padding=True,
                       return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class Encoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *tensors):
            return self.inner(**dict(zip(names, tensors, strict=True))).last_hidden_state

    tmp = out.with_name(out.name + ".partial")
    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(Encoder(model), tuple(sample[n] for n in names), str(tmp), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    tmp.replace(out)
    return out


def _model_shape(model_path: str) -> tuple[int, int]:
    """``(num_heads, hidden_size)`` from the model's ``config.json`` (0, 0: let the optimizer detect them)."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return 0, 0
    cfg = json.loads(config.read_text())
    return int(cfg.get("num_attention_heads", 0)), int(cfg.get("hidden_size", 0))


def build(base: Path, recipe: Recipe, out: Path, model_path: str) -> Path:
    """Apply ``recipe`` to the base export ``base``; write ``out`` (atomically) and ``out``'s ``recipe.json``."""
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(base))
    fused: dict = {}
    if recipe.optimize:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        heads, hidden = _model_shape(model_path)
        options = FusionOptions("bert")
        options.enable_attention = recipe.fuse_attention
        # opt_level 0: only the Python fusions, no hardware-specific ORT rewrites baked into the file
        # (the session applies those at load).
        opt = optimize_model(model, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
                             optimization_options=options)
        fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        model = opt.model
        if not any(o.domain == "com.microsoft" for o in model.opset_import):  # the fused ops' domain
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    tmp = out.with_name(out.name + ".partial")
    if recipe.quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        exclude = [n.name for n in model.graph.node if any(f"/layer.{i}/" in n.name or f"layer_{i}_" in n.name
                                                           for i in recipe.keep_fp32)]
        quantize_dynamic(model, str(tmp), weight_type=QuantType.QInt8, per_channel=recipe.per_channel,
                         reduce_range=recipe.reduce_range, op_types_to_quantize=list(recipe.quantize),
                         nodes_to_exclude=exclude or None,
                         # shape inference cannot type the fused (com.microsoft) ops' outputs: all are float
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    else:
        onnx.save(model, str(tmp))
    (out.parent / "recipe.json").write_text(json.dumps({"recipe": recipe.__dict__, "fused": fused}, indent=1))
    tmp.replace(out)
    return out


def model_cache() -> Path:
    """Where exports are cached: the data folder's ``models/``, or ``RAGTRAIL_MODEL_CACHE``, which lets data
    folders share one export (it is the same for the same model)."""
    return (env_kit.MODEL_CACHE.get() or ragtrail_home() / "models").expanduser()


def onnx_file(model_path: str, recipe: Recipe) -> Path:
    """The ONNX file of ``model_path`` made by ``recipe``, exported and built once, cached under :func:`model_cache`."""
    key = hashlib.sha256(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    stem = f"{Path(model_path).name}-{key}"
    cache = model_cache()
    base_dir, out_dir = cache / f"{stem}-{BASE_TAG}", cache / f"{stem}-{recipe.tag}"
    with file_lock(cache / f".{stem}.lock"):  # one exporter; the others wait and reuse
        out = out_dir / ONNX_FILE
        if not out.exists():
            base = base_dir / ONNX_FILE
            if not base.exists():
                export_base(model_path, base)
            build(base, recipe, out, model_path)
    return out


def load_onnx(model_path: str, backend: str = "onnx-int8", *, recipe: Recipe | None = None,
              threads: int | None = None, spin: bool | None = None, max_batch: int | None = None) -> OnnxEmbedder:
    """The embedder of ``backend`` (a key of :data:`RECIPES`), or of an explicit ``recipe`` (the bench's)."""
    if recipe is None:
        if backend not in RECIPES:
            raise ValueError(f"unknown ONNX backend {backend!r}; one of {', '.join(RECIPES)}")
        recipe = RECIPES[backend]
    return OnnxEmbedder(model_path, onnx_file(model_path, recipe), threads=threads, spin=spin, max_batch=max_batch)
