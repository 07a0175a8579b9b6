"""The index stage streams: one chunk file at a time, only the vectors it needs read from the embed batches'
files (no memory map), however many batches the run has, and a work store's files fetched one by one — the
same points as ever.

Real stages (ingest, plan, chunk, dedupe, embed with the bundled model, index) on an Edge store in a temporary
folder; the probe is the stage's own failpoint after each upsert call."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from staged import stage_run

from ragtrail.core.spec import run_config
from ragtrail.core.workstore import open_run
from ragtrail.stages import writing
from ragtrail.stages.index_results import index_from_results
from ragtrail.store import open_store

DOCS = {f"doc{i:02d}.txt": f"Note {i}: the {w} of station {i} is checked every {i + 2} days by the crew."
        for i, w in enumerate("pump valve boiler filter gauge relay fan hatch winch drain cable lamp".split())}


def _build(root: Path, store: str, work_dir: Path):
    """Ingest, plan, chunk (3 documents a batch), dedupe (2 texts an embed batch: 6 vector files) and embed."""
    cfg, _, chunked, _, embedded = stage_run(root, store, work_dir, DOCS, "idx")
    assert len(embedded) == 6
    return cfg, chunked, embedded


def _mapped_vector_files() -> set[str]:
    return set(re.findall(r"\S*vectors_\d+\.npy", Path("/proc/self/maps").read_text()))


@pytest.fixture
def probe(monkeypatch):
    """Upserts of 2 points; after each, which vector files are mapped and which files lie in the given folder."""
    seen: dict[str, list] = {"maps": [], "local": []}
    watch: dict[str, Path | None] = {"folder": None}
    real = writing.failpoint

    def spy(name, workdir=None):
        if name.startswith("index.after_upsert_"):
            seen["maps"].append(_mapped_vector_files())
            if watch["folder"] is not None:
                seen["local"].append(sorted(p.name for p in watch["folder"].rglob("*") if p.is_file()
                                            and p.suffix in (".parquet", ".npy")))
        return real(name, workdir)

    monkeypatch.setattr(writing, "UPSERT_BATCH", 2)
    monkeypatch.setattr(writing, "failpoint", spy)
    return seen, watch


def _stored(store: str, name: str) -> dict[str, tuple]:
    """point id → (doc_id, chunk_hash, vector) of every point in the collection."""
    with open_store(store) as s:
        return {str(p.id): (p.payload["doc_id"], p.payload["chunk_hash"], p.vector)
                for p in s.scroll(name, ["doc_id", "chunk_hash"], with_vectors=True)}


def _embedded_vectors(embedded: list[dict]) -> dict[str, np.ndarray]:
    out = {}
    for e in embedded:
        hashes = pq.read_table(e["texts_path"], columns=["chunk_hash"]).column(0).to_pylist()
        out.update(zip(hashes, np.load(e["vectors_path"]), strict=True))
    return out


def test_index_maps_no_vector_file(tmp_path, probe):
    """Six embed batches: every point written with its own text's vector, and no .npy ever memory-mapped
    (the stage once mapped every batch at once: one map per batch, past vm.max_map_count at 10M documents)."""
    seen, _ = probe
    store, work_dir = str(tmp_path / "store"), tmp_path / "work"
    cfg, chunked, embedded = _build(tmp_path, store, work_dir)
    out = index_from_results(chunked, embedded, cfg, work_dir, "run-1", location=store)
    assert out["upserted"] == out["vectors"] == len(DOCS) and out["docs_skipped"] == 0
    assert len(seen["maps"]) == 6 and not any(seen["maps"]), seen["maps"]
    assert not _mapped_vector_files()  # none left mapped after the stage
    vectors = _embedded_vectors(embedded)
    points = _stored(store, out["collection"])
    assert len(points) == len(DOCS)
    for _, chunk_hash, vector in points.values():
        assert np.allclose(vector, vectors[chunk_hash], atol=1e-5)


def test_index_fetches_work_store_files_one_at_a_time(tmp_path, probe):
    """With a work store, the stage fetches a chunk, texts or vectors file when it reads it and drops the copy
    after (it once fetched every file of the run first): at most one chunk file and two vector files lie in
    the task's folder at any upsert, none at the end, and the points are the same."""
    seen, watch = probe
    store = str(tmp_path / "store")
    work = open_run("rag_ingest", "run-2", url=f"memory://ragtrail-test/{tmp_path.name}", local_root=tmp_path / "worker")
    cfg, chunked, embedded = _build(tmp_path, store, work.local)
    chunked_urls, embedded_urls = work.publish(chunked), work.publish(embedded)
    assert all("://" in c["chunks_path"] for c in chunked_urls) and all("://" in e["vectors_path"] for e in embedded_urls)
    vectors = _embedded_vectors(embedded)
    expected = {(r["doc_id"], r["chunk_hash"]) for c in chunked
                for r in pq.read_table(c["chunks_path"], columns=["doc_id", "chunk_hash"]).to_pylist()}
    for p in list(work.local.rglob("*")):  # another worker: only the plan's files are here (fetch_plan)
        if p.is_file() and p.parent.name in ("batches", "embed"):
            p.unlink()
    watch["folder"] = work.local
    out = index_from_results(chunked_urls, embedded_urls, cfg, work.local, "run-2", location=store, work=work)
    assert out["upserted"] == len(DOCS) and len(seen["local"]) == 6
    for files in seen["local"]:
        assert sum(f.startswith("chunks_") for f in files) <= 1 and sum(f.startswith("vectors_") for f in files) <= 2, files
    assert not [p for p in work.local.rglob("*") if p.is_file() and p.parent.name in ("batches", "embed")]  # copies dropped
    points = _stored(store, out["collection"])
    assert {(d, h) for d, h, _ in points.values()} == expected and len(points) == len(DOCS)
    for _, chunk_hash, vector in points.values():
        assert np.allclose(vector, vectors[chunk_hash], atol=1e-5)


def test_index_takes_the_embed_stages_bm25_vectors(tmp_path, monkeypatch):
    """The embed stage writes each text's BM25 vector beside its dense one (``sparse_path``: the same encoder
    as a question's, row for row); the index stage writes those instead of encoding the texts again
    (``sparse_encoded`` 0), and encodes again only a file written with another BM25 config — either way a
    sparse search finds each document by its one rare word."""
    from ragtrail.core.recorder import Recorder
    from ragtrail.stages.search import search_collection
    from ragtrail.store.sparse import encoder

    store, work_dir = str(tmp_path / "store"), tmp_path / "work"
    cfg, chunked, embedded = _build(tmp_path, store, work_dir)
    texts = {}
    for e in embedded:
        rows = pq.read_table(e["texts_path"], columns=["text"]).column(0).to_pylist()
        stored = pq.read_table(e["sparse_path"])
        texts.update(zip(rows, zip(stored.column("indices").to_pylist(), stored.column("values").to_pylist(),
                                   strict=True), strict=True))
    for text, (indices, values) in texts.items():
        expected = encoder().documents([text])[0]
        assert indices == expected.indices and np.allclose(values, expected.values)

    rec = Recorder()
    out = index_from_results(chunked, embedded, cfg, work_dir, "run-1", location=store, recorder=rec)
    assert out["upserted"] == len(DOCS) and rec.metrics["sparse_encoded"] == 0

    # One embed batch written under another BM25 config (k1 2.0): its texts are encoded again at index time.
    other = embedded[0]["sparse_path"]
    table = pq.read_table(other)
    meta = {**table.schema.metadata, b"bm25_config": table.schema.metadata[b"bm25_config"].replace(b"1.2", b"2.0")}
    pq.write_table(table.replace_schema_metadata(meta), other)
    cfg2 = run_config({"source": cfg.source, "product": "idx", "version": "v2", "docs_per_batch": 3})
    rec2 = Recorder()
    index_from_results(chunked, embedded, cfg2, work_dir, "run-2", location=store, recorder=rec2)
    assert rec2.metrics["sparse_encoded"] == len(pq.read_table(embedded[0]["texts_path"]))

    for version in ("idx__v1", "idx__v2"):
        with open_store(store) as s:
            hits = search_collection(s, version, ["winch", "boiler"], 3, mode="sparse")
        assert [h[0].payload["doc_id"].split("/")[-1] for h in hits] == ["doc08.txt", "doc02.txt"], hits


def test_a_version_is_written_in_parts_one_part_held_at_a_time(tmp_path, monkeypatch, probe):
    """With ``RAGTRAIL_EDGE_PART_POINTS`` 3, the 12 one-chunk documents in 4 chunk batches make 4 parts, cut
    at the batches' first documents; after every upsert the index stage holds at most one part loaded (it
    once held the whole version: its memory grew with the corpus), none at the end; the points are those
    of a build in one part."""
    from ragtrail.store import edge_shards
    from ragtrail.store.edge_parts import shard_dir

    seen, _ = probe
    real = writing.failpoint
    held: list[int] = []

    def spy(name, workdir=None):
        if name.startswith("index.after_upsert_"):
            held.append(sum(edge_shards.is_loaded(folder, shard_dir(j)) for j in range(4)))
        return real(name, workdir)

    monkeypatch.setattr(writing, "failpoint", spy)
    store, work_dir = str(tmp_path / "store"), tmp_path / "work"
    cfg, chunked, embedded = _build(tmp_path, store, work_dir)
    folder = Path(store) / "collections" / "idx__v1"
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "3")
    out = index_from_results(chunked, embedded, cfg, work_dir, "run-1", location=store)
    assert out["upserted"] == out["vectors"] == len(DOCS)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["shard", "shard-0001", "shard-0002", "shard-0003"]
    assert held and max(held) == 1, held
    assert not any(edge_shards.is_loaded(folder, shard_dir(j)) for j in range(4))
    one = str(tmp_path / "one")
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "0")
    index_from_results(chunked, embedded, cfg, work_dir, "run-1", location=one)
    assert not (Path(one) / "collections" / "idx__v1" / "shard-0001").exists()
    parts, whole = _stored(store, "idx__v1"), _stored(one, "idx__v1")
    assert parts.keys() == whole.keys()
    for pid, (doc, chunk_hash, vector) in parts.items():
        assert (doc, chunk_hash) == whole[pid][:2] and np.allclose(vector, whole[pid][2], atol=1e-6)
