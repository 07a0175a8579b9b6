"""Embedding backends side by side: texts/s, retrieval quality and agreement with fp32, in one process.

Backends (``--backends``; the names below, or any :class:`ragtrail.stages.onnx_backend.Recipe` tag):

- ``torch``: sentence-transformers fp32, the reference;
- ``fp32``: the plain ONNX export; ``fp32-opt``: after ONNX Runtime's transformer optimizer (BERT fusions);
- ``int8``: the plain export, MatMul weights int8 per channel (the recipe shipped before issue 30);
- ``int8-opt``: the optimised export, MatMul weights int8 per channel (``onnx-int8`` now);
- ``int8-opt-attn``: the optimised export, MatMul *and* the fused attention's QKV weights int8 (QAttention);
- ``int8-opt-noattn`` / ``fp32-opt-noattn``: every fusion but attention's, then (int8) all MatMul weights int8.

Speed: the labelled pgdocs chunks are shuffled (seeded) and cut into ``--rounds`` slices; every slice is
embedded by every backend, the order rotating from slice to slice, so each backend sees the same texts under
the same machine load; texts/s is reported as the median over slices, and each ratio to ``torch`` as the
median of the per-slice ratios. The vectors of those same calls give quality: MRR@10 / nDCG@10 / recall@10
on the pgdocs known-item questions and on ``include/sample_corpus_queries.jsonl`` (a document scores as its
best chunk, exact cosine; :func:`chunk_quality.rank_quality`), and the mean / min cosine of each backend's
chunk vectors to torch's. Then, on the default backend: intra-op threads, spinning on/off and batch size,
interleaved the same way. Writes ``bench/results/embed_backends.json``.

Usage::

    python bench/embed_backends.py [--pgdocs 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results" / "embed_backends.json"
BATCH = 64


def recipes() -> dict:
    from ragtrail.stages.onnx_backend import RECIPES, Recipe

    return {"fp32": Recipe(optimize=False), "fp32-opt": Recipe(optimize=True),
            "int8": Recipe(optimize=False, quantize=("MatMul",)), "int8-opt": RECIPES["onnx-int8"],
            "int8-opt-attn": Recipe(optimize=True, quantize=("MatMul", "Attention")),
            "int8-opt-rr": Recipe(optimize=True, quantize=("MatMul",), reduce_range=True),
            "fp32-opt-noattn": Recipe(optimize=True, fuse_attention=False),
            "int8-opt-noattn": Recipe(optimize=True, fuse_attention=False, quantize=("MatMul",))}


def load(name: str, model_path: str, **kw):
    from ragtrail.stages.embedding import load_model
    from ragtrail.stages.onnx_backend import load_onnx

    if name == "torch":
        return load_model("all-MiniLM-L6-v2", "torch")
    return load_onnx(model_path, recipe=recipes()[name], **{"max_batch": BATCH, **kw})  # same batch as torch


def encode(model, texts: list[str], batch_size: int = BATCH):
    import numpy as np

    return np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                   show_progress_bar=False), dtype=np.float32)


def interleaved(models: dict, texts: list[str], rounds: int, batch_sizes: dict | None = None) -> tuple[dict, dict]:
    """Embed ``texts`` with every model, slice by slice in rotating order; per-model vectors and per-slice rates."""
    import numpy as np

    names = list(models)
    order = list(range(len(texts)))
    random.Random(30).shuffle(order)
    slices = [order[i::rounds] for i in range(rounds)]
    vecs = {n: np.zeros((len(texts), 384), dtype=np.float32) for n in names}
    rates: dict[str, list[float]] = {n: [] for n in names}
    for r, idx in enumerate(slices):
        batch = [texts[i] for i in idx]
        for n in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            vecs[n][idx] = encode(models[n], batch, (batch_sizes or {}).get(n, BATCH))
            rates[n].append(len(batch) / (time.perf_counter() - t0))
        print(f"  slice {r + 1}/{rounds}: " + ", ".join(f"{n} {rates[n][-1]:.1f}" for n in names), flush=True)
    return vecs, rates


def summary(rates: dict, ref: str) -> dict:
    out = {}
    for n, rs in rates.items():
        out[n] = {"texts_per_s": round(statistics.median(rs), 2), "per_slice": [round(x, 2) for x in rs]}
        if ref in rates:
            out[n]["ratio_to_" + ref] = round(statistics.median(a / b for a, b in zip(rs, rates[ref], strict=True)), 3)
    return out


def labelled_sets(pages: int) -> dict:
    """The pgdocs known-item set (``pages`` pages) and the sample corpus, chunked at the pipeline's defaults."""
    import pgdocs
    from chunk_quality import corpus_chunks

    from ragtrail.core.settings import SAMPLE_CORPUS
    from ragtrail.stages.evaluation import load_queries

    corpus, questions, _ = pgdocs.prepare(REPO / ".data" / "bench" / "pgdocs", pages)
    sets = {"pgdocs": (corpus, questions), "sample": (SAMPLE_CORPUS, REPO / "include" / "sample_corpus_queries.jsonl")}
    data = {}
    for name, (c, q) in sets.items():
        texts, owners, n_docs, _ = corpus_chunks(c)
        data[name] = {"texts": texts, "owners": owners, "docs": n_docs, "queries": load_queries(q)}
    return data


def cosines(a, b) -> dict:
    cos = (a * b).sum(axis=1)
    return {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}


def quality(models: dict, data: dict, speed: tuple, ref: str) -> tuple[dict, dict]:
    """Per quality backend and set: MRR/nDCG/recall@10 and the cosine to ``ref``'s chunk vectors."""
    import numpy as np
    from chunk_quality import rank_quality

    speed_idx, rest_idx, svecs = speed
    out: dict = {n: {} for n in models}
    sizes = {}
    for set_name, d in data.items():
        qv = {n: encode(m, [q["text"] for q in d["queries"]]) for n, m in models.items()}
        cv = {}
        for n, m in models.items():
            if set_name == "pgdocs":  # the speed slice's vectors are reused
                cv[n] = np.zeros((len(d["texts"]), 384), dtype=np.float32)
                cv[n][speed_idx] = svecs[n]
                cv[n][rest_idx] = encode(m, [d["texts"][i] for i in rest_idx])
            else:
                cv[n] = encode(m, d["texts"])
            print(f"  quality {set_name}: {n} done", flush=True)
        sizes[set_name] = {"docs": d["docs"], "chunks": len(d["texts"]), "queries": len(d["queries"])}
        for n in models:
            out[n][set_name] = {**rank_quality(cv[n], qv[n], d["owners"], d["queries"]), **cosines(cv[n], cv[ref])}
    for n in models:
        for set_name in data:
            for k in ("mrr_at_10", "ndcg_at_10"):
                out[n][set_name][k + "_minus_ref"] = round(out[n][set_name][k] - out[ref][set_name][k], 4)
    return out, sizes


def print_table(out: dict, sets: list[str]) -> None:
    print(f"\n{'backend':<15}{'texts/s':>9}{'ratio':>8}{'load s':>8}  " + "  ".join(
        f"{s + ' MRR':>11}{'nDCG':>7}{'cos':>8}" for s in sets))
    for n, b in out["backends"].items():
        print(f"{n:<15}{b['texts_per_s']:>9.1f}{b.get('ratio_to_torch', 0):>8.2f}{b['load_s']:>8.1f}  " + "  ".join(
            f"{b[s]['mrr_at_10']:>11.4f}{b[s]['ndcg_at_10']:>7.4f}{b[s].get('cos_mean', 0):>8.4f}" if s in b
            else f"{'–':>26}" for s in sets))
    for k, v in out.get("settings", {}).items():
        print(f"{k:<22}{v['texts_per_s']:>9.1f}{v.get('ratio_to_default', 0):>8.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pgdocs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--backends", default="torch,fp32,fp32-opt,int8,int8-opt,int8-opt-attn")
    ap.add_argument("--quality", default="fp32-opt,int8,int8-opt,int8-opt-attn",
                    help="backends whose quality is measured on every chunk")
    ap.add_argument("--reference", default="fp32-opt", help="the fp32 backend quality and cosine are compared to")
    ap.add_argument("--speed-share", type=int, default=3, help="1/N of the pgdocs chunks are the speed set")
    ap.add_argument("--skip-settings", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ragtrail.core.cpus import affinity_cpus, cgroup_quota, usable_cpus
    from ragtrail.core.settings import DEFAULT_EMBED_BACKEND
    from ragtrail.stages.embedding import resolve_model_path

    model_path = resolve_model_path("all-MiniLM-L6-v2")
    data = labelled_sets(args.pgdocs)
    names = args.backends.split(",")
    models, load_s = {}, {}
    for n in names:
        t0 = time.perf_counter()
        models[n] = load(n, model_path)
        encode(models[n], data["sample"]["texts"][:BATCH])  # warm-up
        load_s[n] = round(time.perf_counter() - t0, 2)
    threads = usable_cpus()
    out: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": {
        "os_cpu_count": os.cpu_count(), "affinity": affinity_cpus(), "cgroup_quota": cgroup_quota(),
        "usable": threads, "loadavg_start": os.getloadavg()}, "batch_size": BATCH, "rounds": args.rounds,
        "default_backend": DEFAULT_EMBED_BACKEND, "quality_reference": args.reference}
    print(f"pgdocs: {len(data['pgdocs']['texts'])} chunks, {len(data['pgdocs']['queries'])} questions; "
          f"sample: {len(data['sample']['texts'])} chunks; threads {threads}", flush=True)
    # Speed: every backend on a third of the pgdocs chunks (interleaved). Quality: the quality backends on all
    # the chunks, reusing the speed slice's vectors (a busy 2-core machine cannot embed everything 6 times).
    pg = data["pgdocs"]["texts"]
    order = list(range(len(pg)))
    random.Random(30).shuffle(order)
    cut = len(pg) // args.speed_share
    speed_idx, rest_idx = sorted(order[:cut]), sorted(order[cut:])
    svecs, rates = interleaved(models, [pg[i] for i in speed_idx], args.rounds)
    backends = {n: {**row, "load_s": load_s[n]} for n, row in summary(rates, "torch").items()}
    for other in ("torch", "int8"):  # the speed set's vectors against torch's and the plain int8's
        if other in svecs:
            for n in names:
                backends[n][f"speed_set_cos_to_{other}"] = cosines(svecs[n], svecs[other])
    qmodels = {n: models[n] for n in args.quality.split(",") if n in names}
    if qmodels:
        scores, out["sets"] = quality(qmodels, data, (speed_idx, rest_idx, svecs), args.reference)
        for n, row in scores.items():
            backends[n].update(row)
    out["backends"] = backends
    if not args.skip_settings:
        out["settings"] = settings_sweep(model_path, pg, args.rounds, threads)
    out["cpus"]["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print_table(out, list(data))
    print(f"written: {args.out}")


def settings_sweep(model_path: str, texts: list[str], rounds: int, threads: int) -> dict:
    """Session settings of the default recipe, interleaved on a third of the pgdocs chunks."""
    from ragtrail.stages.onnx_backend import RECIPES, load_onnx

    recipe = RECIPES["onnx-int8"]
    configs = {"default": ({}, BATCH), "spin_on": ({"spin": True}, BATCH), "threads_1": ({"threads": 1}, BATCH)}
    if threads > 2:
        configs[f"threads_{threads // 2}"] = ({"threads": threads // 2}, BATCH)
    configs |= {f"batch_{b}": ({}, b) for b in (8, 16, 32, 128)}
    models = {k: load_onnx(model_path, recipe=recipe, max_batch=b, **kw) for k, (kw, b) in configs.items()}
    subset = texts[: max(len(texts) // 6, 64)]
    print(f"settings sweep on {len(subset)} chunks", flush=True)
    _, rates = interleaved(models, subset, rounds, {k: b for k, (_, b) in configs.items()})
    return summary(rates, "default")


if __name__ == "__main__":
    main()
