"""The peer: the ~20-line LangChain pipeline a user would write instead of ragtrail.

HTML pages read with BeautifulSoup's ``get_text`` → ``RecursiveCharacterTextSplitter`` (1,000 / 200
characters) → ``HuggingFaceEmbeddings`` on the same local model folder → ``QdrantVectorStore`` in
Qdrant local mode; then the same known-item questions, a document scoring as its best chunk.

It runs in its own virtual environment (``ensure_venv``), never importing ragtrail, so neither
project's pins bend the other's. Run by ``bench/run.py``; by hand::

    .data/bench/peer-venv/bin/python bench/peer.py CORPUS QUESTIONS QDRANT_DIR MODEL_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

# Pinned so that a re-run measures the same peer; torch first (the CPU wheel), as for ragtrail.
TORCH = "torch==2.13.0"
PEER_PINS = ["langchain-text-splitters==1.1.3", "langchain-huggingface==1.2.3", "langchain-qdrant==1.1.0",
             "sentence-transformers==6.2.0", "qdrant-client==1.20.0", "beautifulsoup4", "lxml"]


def ensure_venv(venv: Path) -> Path:
    """Create ``venv`` with the peer's packages unless it is complete; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".peer-installed"
    wanted = " ".join([TORCH, *PEER_PINS])
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "-q", "--disable-pip-version-check", "install"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *PEER_PINS], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)  # conflicting pins fail here, loudly
    stamp.write_text(wanted)
    return python


def fold(hits, k: int = 10) -> list[str]:
    best: dict[str, float] = {}
    for doc, score in hits:
        src = doc.metadata["source"]
        best[src] = max(score, best.get(src, -1e9))
    return [d for d, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def main(corpus: Path, questions: Path, qdrant: Path, model: str) -> dict:
    t0 = time.perf_counter()
    from bs4 import BeautifulSoup
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    def text(p: Path) -> str:  # HTML as BeautifulSoup's text, Markdown and plain text as they are
        if p.suffix in (".html", ".htm"):
            return BeautifulSoup(p.read_bytes(), "lxml").get_text()
        return p.read_text(encoding="utf-8", errors="replace")

    docs = [Document(page_content=text(p), metadata={"source": str(p.relative_to(corpus))})
            for p in sorted(corpus.rglob("*")) if p.suffix in (".html", ".htm", ".md", ".txt")]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    embeddings = HuggingFaceEmbeddings(model_name=model, encode_kwargs={"normalize_embeddings": True})
    t_embed = time.perf_counter()
    store = QdrantVectorStore.from_documents(chunks, embeddings, path=str(qdrant), collection_name="peer")
    t_eval = time.perf_counter()
    rows = [json.loads(line) for line in questions.read_text().splitlines() if line.strip()]
    # Scored by the orchestrator with ragtrail's own metrics (bench/real.py: score_peer).
    rankings = {q["id"]: fold(store.similarity_search_with_score(q["text"], k=50)) for q in rows}
    tokenizer = embeddings._client.tokenizer
    window = embeddings._client.max_seq_length - 2
    truncated = sum(len(tokenizer(c.page_content, add_special_tokens=False)["input_ids"]) > window for c in chunks)
    return {"docs": len(docs), "chunks": len(chunks), "truncated_chunks": truncated,
            "index_s": t_eval - t_embed, "eval_s": time.perf_counter() - t_eval, "total_s": time.perf_counter() - t0,
            "rankings": rankings, "questions": len(rows)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])))
