"""The real gate stage (:func:`ragtrail.stages.gate.evaluate_and_promote`, promote off) on the FAQ set of
:mod:`faqs`, the version configured ``hybrid`` with RRF and with DBSF at equal weights (Qdrant's own fusion),
then with the default (DBSF, BM25 weight 0.25): every mode measured, and the mode the gate names as beating the
configured one (tolerance 0.02).

Reuses the embeddings ``bench/hybrid.py --faqs`` cached in ``.data/bench/hybrid`` (run that first). Usage::

    python bench/gate_modes.py [--out bench/results/gate_modes.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    import faqs
    import numpy as np
    from hybrid import chunk_corpus

    from ragtrail.core.recorder import Recorder
    from ragtrail.core.settings import DEFAULT_EMBED_BACKEND, DEFAULT_EMBEDDER, DEFAULT_SPARSE_WEIGHT
    from ragtrail.stages import gate
    from ragtrail.store import Point, StoreSettings, open_store
    from ragtrail.store.sparse import CONFIG, encoder

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    corpus, questions, _ = faqs.prepare(REPO / ".data" / "bench" / "faqs")
    texts, owners = chunk_corpus(corpus)
    vectors = np.load(REPO / ".data" / "bench" / "hybrid" / f"{corpus.name}-{len(texts)}.npz")["vectors"]
    sparse = encoder(CONFIG).documents(texts)
    out = {"set": "faqs (bench/faqs.py)", "tolerance": 0.02}
    with tempfile.TemporaryDirectory() as tmp:
        location = StoreSettings(path=tmp, kind="edge")
        for fusion, weight in (("rrf", 0.5), ("dbsf", 0.5), ("dbsf", DEFAULT_SPARSE_WEIGHT)):
            version = fusion if weight == 0.5 else f"{fusion}-w{weight}"
            name = f"faqs__{version}"
            with open_store(location) as store:
                store.create(name, int(vectors.shape[1]), {"embedder": DEFAULT_EMBEDDER, "sparse": dict(CONFIG),
                                                           "embed_backend": DEFAULT_EMBED_BACKEND,
                                                           "retrieval_mode": "hybrid", "fusion": fusion,
                                                           "sparse_weight": weight})
                store.upsert(name, [Point(id=i, vector=vectors[i].tolist(), sparse=sparse[i],
                                          payload={"doc_id": owners[i], "text": texts[i]}) for i in range(len(texts))])
                store.finish(name)
            d = gate.evaluate_and_promote(location=location, product="faqs", version=version, queries_path=questions,
                                          promote=False, tolerance=0.02, recorder=Recorder())
            out[f"configured hybrid-{version}"] = {
                "better_mode": d["better_mode"], "reason": d["reason"], "sparse_weight": d["sparse_weight"],
                "modes": {m: {k: round(v, 4) for k, v in x.items()} for m, x in d["modes"].items()}}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
