"""Making the ONNX files of the embedding backends (:class:`Recipe`): once at install, else in one child process.

The export needs torch + transformers + onnx (+0.8 GB resident, 1.35 GB peak, never given back): it never runs
in a pipeline process. ``make install`` runs ``python -m ragtrail.stages.embedding prepare``, which writes the
default backend's file into the environment (:func:`ragtrail.stages.onnx_backend.prepared_dir`,
``<sys.prefix>/share/ragtrail/models``); a run finds it there. A file found neither there nor in the model cache
(another backend, another model, an environment that was not prepared) is made by :func:`export_in_child`: one
``python -m ragtrail.stages.onnx_export build …`` child that exports and builds it into the cache, the parent
waiting under the cache's lock. Imports only the standard library at the top (torch, onnx: inside functions).

Example::

    python -m ragtrail.stages.embedding prepare                        # the default backend, default model
    python -m ragtrail.stages.embedding prepare --backend onnx-fp32 --embedder /models/my-model
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def make(model_path: str, recipe, base: Path, out: Path) -> Path:
    """``out`` from the base export ``base`` (made first when missing) by ``recipe``; in this process."""
    if not base.exists():
        export_base(model_path, base)
    return build(base, recipe, out, model_path)


def export_in_child(model_path: str, recipe, base: Path, out: Path) -> Path:
    """:func:`make` in one child interpreter, so that torch, transformers and onnx never load in this one.

    Raises:
        RuntimeError: the child failed; its last output lines are in the message.
    """
    cmd = [sys.executable, "-m", "ragtrail.stages.onnx_export", "build", "--model", model_path,
           "--recipe", json.dumps(recipe.__dict__), "--base", str(base), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)  # the exporter's warnings stay off the terminal
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise RuntimeError(f"the ONNX export of {model_path} (exit {proc.returncode}) failed:\n{tail}")
    return out


def main(argv: list[str] | None = None) -> int:
    """``build --model M --recipe JSON --base B --out O``: what :func:`export_in_child`'s child runs."""
    parser = argparse.ArgumentParser(prog="python -m ragtrail.stages.onnx_export", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("build", help="export and build one file (a run's child)")
    child.add_argument("--model", required=True)
    child.add_argument("--recipe", required=True, help="the Recipe's fields as JSON")
    child.add_argument("--base", required=True, type=Path)
    child.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    fields = json.loads(args.recipe)
    recipe = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    make(args.model, recipe, args.base, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
