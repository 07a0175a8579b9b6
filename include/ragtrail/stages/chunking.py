"""Stage 2 — chunk: cut documents into overlapping windows measured in the embedder's own tokens.

``encode()`` silently truncates anything longer than the model's window, so chunk sizes are counted
with the embedder's tokenizer, never in characters or words. Cuts follow the document's Markdown
structure (:mod:`ragtrail.stages.md_structure`): a section that fits is one chunk, a code block, table
or list item that fits is not cut, and inside a block cuts prefer line and sentence ends (not after
"e.g." or "Dr."), then word boundaries; every chunk is re-measured at the end and any that still
exceeds the window is split again, so ``truncated_chunks`` is 0 by construction and by check.
"""

from __future__ import annotations

import bisect
import hashlib
import uuid
from collections import deque
from pathlib import Path

from ragtrail.core.progress import Progress
from ragtrail.core.recorder import Recorder
from ragtrail.core.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, DEFAULT_EMBEDDER
from ragtrail.stages import md_structure
from ragtrail.stages.md_structure import SECTION, Structure

CHUNKS_FILE = "chunks.parquet"
POINT_NAMESPACE = uuid.UUID("6f0e7c1a-3b57-4a55-9a55-5a6b1d0e9a11")
_SAMPLE_SIZE = 25


def point_id(product: str, doc_id: str, chunk_index: int, chunk_hash: str) -> str:
    """Deterministic Qdrant point id: the same chunk of the same document always lands on one point."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{product}\x1f{doc_id}\x1f{chunk_index}\x1f{chunk_hash}"))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_text(text: str, tokenizer, chunk_size: int, overlap: int,
               structure: Structure | None = None) -> list[tuple[int, int, int]]:
    """Cut ``text`` into ``(char_start, char_end, n_tokens)`` spans of at most ``chunk_size`` tokens.

    A span ends where a section starts (a top-level heading) when one is in its window, so a section
    that fits is never cut and a chunk never runs into the next; otherwise at the latest best place in
    the window's back half (block, list item, line or sentence end, word), moved back to before a code
    block, table or list item it would cut when that block fits a chunk. Consecutive spans share about
    ``overlap`` tokens, moved to the nearest word boundary, except across a section start.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [o for o in enc["offset_mapping"] if o[1] > o[0]]
    n = len(offsets)
    if n == 0:
        return []
    structure = structure if structure is not None else md_structure.parse(text)
    scores = md_structure.break_scores(text, offsets, structure)
    guard = md_structure.guards(structure, [o[0] for o in offsets], chunk_size)
    next_section = [n] * (n + 1)
    for i in range(n - 1, 0, -1):
        next_section[i] = i if scores[i] == SECTION else next_section[i + 1]
    spans = []
    start = 0
    while start < n:
        end = _cut(start, chunk_size, n, scores, guard, next_section)
        spans.append((offsets[start][0], offsets[end - 1][1], end - start))
        if end >= n:
            break
        nxt = end
        if overlap and scores[end] < SECTION:
            nxt = next((i for i in range(max(start + 1, end - overlap), end) if scores[i] >= 1), end)
        start = nxt
    return spans


def _cut(start: int, chunk_size: int, n: int, scores: list[int], guard: list[int], next_section: list[int]) -> int:
    """Where the chunk that starts at token ``start`` ends (exclusive); see :func:`split_text`."""
    end = min(start + chunk_size, n)
    if next_section[start + 1] <= end and next_section[start + 1] < n:
        return next_section[start + 1]
    if end < n:
        # Latest best-scoring cut in the back half of the window: long chunks, clean edges.
        lo = start + max(1, chunk_size // 2)
        end = max(range(lo, end + 1), key=lambda i: (scores[i], i))
        if guard[end] > start:
            end = guard[end]
    return end


# Tokens a chunk gives to its heading path ("Title › Section › Subsection") when the document has headings.
PATH_TOKENS = 24


def heading_paths(text: str, structure: Structure | None = None) -> list[tuple[int, str, int, str]]:
    """``(char offset, heading path, heading start, parent path)`` for each top-level Markdown heading.

    The path is the document's first heading (its title) then the enclosing headings, e.g.
    ``"SET › Description"``; a heading of the same or a higher level closes the ones below it. The
    parent path is the path without the heading itself (``"SET"``; ``""`` for the title). Headings
    are found by :mod:`ragtrail.stages.md_structure`: a ``#`` line in a code block is not one.
    """
    structure = structure if structure is not None else md_structure.parse(text)
    out, stack, title = [], [], None
    for h in structure.headings:
        if title is None:
            title = h.name
            out.append((h.end, title, h.start, ""))
            continue
        stack = [(lv, nm) for lv, nm in stack if lv < h.level]
        parent = " › ".join([title, *(nm for _, nm in stack if nm != title)])
        stack.append((h.level, h.name))
        out.append((h.end, " › ".join([title, *(nm for _, nm in stack if nm != title)]), h.start, parent))
    return out


def _path_before(paths: list[tuple[int, str]], ends: list[int], pos: int) -> str:
    """The heading path in force at ``pos`` (headings ending before it), or ``""``; ``ends``: each path's offset.

    A binary search: a document with 100,000 headings and as many chunks costs n log n, not n².
    """
    i = bisect.bisect_right(ends, pos)
    return paths[i - 1][1] if i else ""


def _fit(tokenizer, text: str, budget: int) -> tuple[str, int]:
    """``text`` cut to at most ``budget`` tokens (keeping its start), and its token count."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= budget:
        return text, len(enc["input_ids"])
    cut = enc["offset_mapping"][max(budget - 2, 0)][1]  # room for the ellipsis' own token
    short = text[:cut].rstrip() + " …"
    return short, len(tokenizer(short, add_special_tokens=False)["input_ids"])


def chunk_document(text: str, tokenizer, chunk_size: int, overlap: int, window: int,
                   with_path: bool = True) -> list[dict]:
    """Chunk one document and guarantee every chunk fits the embedder's window.

    With ``with_path`` (and a document with Markdown headings) each chunk is led by its heading path,
    title first, within the same token budget — a chunk that starts at a heading by the path above it
    (none for the title) — so a question that names the page or the section finds the chunk even
    when its words are not in the passage.
    ``char_start`` / ``char_end`` always locate the passage itself in ``text``.
    """
    structure = md_structure.parse(text)
    paths = heading_paths(text, structure) if with_path else []
    reserve = min(PATH_TOKENS, chunk_size // 4) if paths else 0
    ends = [p[0] for p in paths]
    parents = {p[2]: p[3] for p in paths}  # heading start → the path above it
    fitted: dict[str, str] = {}  # path → its prefix, cut to the reserve (tokenised once per path)
    out = []
    pending = deque((s, e) for s, e, _ in split_text(text, tokenizer, chunk_size - reserve, overlap, structure))
    while pending:
        s, e = pending.popleft()
        piece = text[s:e].strip()
        if not piece:
            continue
        lead = len(text[s:e]) - len(text[s:e].lstrip())
        # A chunk that starts at a heading is led by the path above it; any other by the path it is in.
        path = (parents[s + lead] if s + lead in parents else _path_before(paths, ends, s + lead)) if paths else ""
        if path and path not in fitted:
            fitted[path] = _fit(tokenizer, path, reserve)[0]
        prefix = fitted[path] if path else ""
        full = f"{prefix}\n{piece}" if prefix else piece
        n_tokens = len(tokenizer(full, add_special_tokens=False)["input_ids"])
        if n_tokens > window and e - s > 1:
            # Re-tokenising a span can differ from the document-level count at odd boundaries
            # (e.g. a URL cut mid-token): split it again rather than let encode() truncate it.
            sub = [(s + a, s + b) for a, b, _ in split_text(text[s:e], tokenizer, window - reserve, 0)]
            if len(sub) > 1:
                pending.extendleft(reversed(sub))
                continue
            mid = (s + e) // 2
            pending.extendleft([(mid, e), (s, mid)])
            continue
        out.append({"text": full, "n_tokens": n_tokens, "char_start": s + lead, "char_end": s + lead + len(piece)})
    return out


def _chunks_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("point_id", pa.string()),
            ("doc_id", pa.string()),
            ("chunk_index", pa.int32()),
            ("text", pa.large_string()),
            ("n_tokens", pa.int32()),
            ("chunk_hash", pa.string()),
            ("doc_hash", pa.string()),
            ("uri", pa.string()),
            ("n_chunks", pa.int32()),
            ("char_start", pa.int64()),
            ("char_end", pa.int64()),
            ("metadata", pa.string()),  # the document's metadata (JSON), carried to the payload
        ]
    )


def chunk_documents(
    docs_path: str | Path,
    workdir: str | Path,
    *,
    product: str,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
    embedder: str = DEFAULT_EMBEDDER,
    out_name: str = CHUNKS_FILE,
    recorder: Recorder | None = None,
) -> dict:
    """Chunk every document of ``docs_path`` into ``workdir/<out_name>`` (default ``chunks.parquet``).

    Args:
        docs_path: the ingest stage's ``docs.parquet``.
        product: part of every point id, so two products never share points.
        chunk_size: maximum tokens per chunk; at most the embedder's window.
        chunk_overlap: tokens shared by consecutive chunks of a document; less than ``chunk_size``.
        embedder: whose tokenizer measures the chunks.

    Returns:
        ``{"chunks_path", "chunks", "docs"}``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ragtrail.stages.embedding import load_tokenizer, token_window

    rec = recorder or Recorder()
    window = token_window(embedder)
    if not 1 <= chunk_size <= window:
        raise ValueError(f"chunk_size must be between 1 and {window} tokens for {embedder}, got {chunk_size}")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError(f"chunk_overlap must be >= 0 and < chunk_size ({chunk_size}), got {chunk_overlap}")
    tokenizer = load_tokenizer(embedder)
    rec.param(chunk_size=chunk_size, chunk_overlap=chunk_overlap, embedder_name=embedder,
              token_window=window, tokenizer=type(tokenizer).__name__)

    schema = _chunks_schema()
    out_path = Path(workdir) / out_name
    tmp_path = out_path.with_suffix(".partial")
    n_docs = n_chunks = total_tokens = truncated = 0
    min_tok, max_tok, first_doc = None, 0, None
    sample: list[dict] = []
    source = pq.ParquetFile(docs_path)
    progress = Progress("chunk", source.metadata.num_rows, "documents", recorder=rec)
    with pq.ParquetWriter(tmp_path, schema) as writer:
        for batch in source.iter_batches(
            batch_size=64, columns=["doc_id", "text", "content_hash", "uri", "metadata"]
        ):
            rows = []
            for doc in batch.to_pylist():
                n_docs += 1
                first_doc = doc["doc_id"] if first_doc is None else min(first_doc, doc["doc_id"])
                pieces = chunk_document(doc["text"], tokenizer, chunk_size, chunk_overlap, window)
                for idx, ch in enumerate(pieces):
                    h = text_hash(ch["text"])
                    rows.append({"point_id": point_id(product, doc["doc_id"], idx, h), "doc_id": doc["doc_id"],
                                 "chunk_index": idx, "chunk_hash": h, "doc_hash": doc["content_hash"],
                                 "uri": doc["uri"], "n_chunks": len(pieces), "metadata": doc["metadata"], **ch})
                    total_tokens += ch["n_tokens"]
                    max_tok = max(max_tok, ch["n_tokens"])
                    min_tok = ch["n_tokens"] if min_tok is None else min(min_tok, ch["n_tokens"])
                    truncated += ch["n_tokens"] > window
                    if idx == 0 and len(sample) < _SAMPLE_SIZE:
                        sample.append({"doc_id": doc["doc_id"], "chunk_index": idx,
                                       "n_tokens": ch["n_tokens"], "text": ch["text"]})
            n_chunks += len(rows)
            progress.update(batch.num_rows, chunks=n_chunks)
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))

    tmp_path.replace(out_path)  # a killed try never leaves a half file that looks finished
    progress.finish(chunks=n_chunks, tokens=total_tokens, truncated=truncated)
    rec.metric(chunk_count=n_chunks, total_tokens=total_tokens, truncated_chunks=truncated,
               avg_chunk_tokens=total_tokens / n_chunks if n_chunks else 0, min_chunk_tokens=min_tok or 0,
               max_chunk_tokens=max_tok, chunks_per_document=n_chunks / n_docs if n_docs else 0,
               documents=n_docs)
    rec.json("chunk_sample.json", sample)
    # first_doc: where this batch's documents begin (the index stage cuts an embedded store's parts there)
    return {"chunks_path": str(out_path), "chunks": n_chunks, "docs": n_docs, "first_doc": first_doc}
