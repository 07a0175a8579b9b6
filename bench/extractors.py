"""Our HTML extractor against trafilatura on the real-docs benchmark: extraction time and retrieval quality.

Each page of the PostgreSQL manual sample (:mod:`pgdocs`) is turned into text twice — by ragtrail's own
structural extractor (:func:`ragtrail.sources.parsing.parse_bytes`, what ingest runs) and by trafilatura
(``trafilatura.extract``, Markdown output with tables and formatting kept; ``favor_recall``) — then chunked at
the pipeline's defaults, embedded with the default backend, and ranked as :mod:`chunk_quality` does (documents
by their best chunk, exact cosine). trafilatura is not a dependency of ragtrail: install it beside the bench
(``pip install --target /tmp/traf trafilatura``; ``PYTHONPATH=/tmp/traf``). A page trafilatura returns nothing
for keeps no chunk (it cannot be found), as it would in a pipeline built on it::

    PYTHONPATH=/tmp/traf python bench/extractors.py --pgdocs 100 [--out bench/results/extractors.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def _ours(name: str, data: bytes) -> str:
    from ragtrail.sources.parsing import parse_bytes

    return parse_bytes(name, data).text


def _trafilatura(name: str, data: bytes) -> str:
    import trafilatura

    return trafilatura.extract(data.decode("utf-8", "replace"), output_format="markdown", include_tables=True,
                               include_formatting=True, include_links=False, favor_recall=True) or ""


def measure(corpus: Path, questions: Path, extract) -> dict:
    import numpy as np
    from chunk_quality import rank_quality

    from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import embed_texts, load_tokenizer, token_window
    from ragtrail.stages.evaluation import load_queries

    tok, window = load_tokenizer(), token_window()
    texts, owners, extract_s, empty, chars = [], [], 0.0, 0, 0
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(corpus))
        t0 = time.perf_counter()
        text = extract(rel, path.read_bytes())
        extract_s += time.perf_counter() - t0
        empty += not text.strip()
        chars += len(text)
        chunks = chunk_document(text, tok, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP, window) if text.strip() else []
        texts += [c["text"] for c in chunks]
        owners += [rel] * len(chunks)
    queries = load_queries(questions)
    backend = "onnx-int8"
    quality = rank_quality(np.asarray(embed_texts(texts, backend=backend)),
                           np.asarray(embed_texts([q["text"] for q in queries], backend=backend)), owners, queries)
    return {"chunks": len(texts), "chars": chars, "empty_pages": empty, "extract_s": round(extract_s, 3),
            "queries": len(queries), "backend": backend, **quality}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pgdocs", type=int, default=100)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import pgdocs
    import trafilatura

    corpus, questions, _ = pgdocs.prepare(REPO / ".data" / "bench" / "pgdocs", args.pgdocs)
    out = {"corpus": f"pgdocs {args.pgdocs} pages", "trafilatura": trafilatura.__version__,
           "ours": measure(corpus, questions, _ours), "trafilatura_markdown": measure(corpus, questions, _trafilatura)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
