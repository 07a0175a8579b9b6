"""The upstream stages of the index/write tests, for real: ingest a folder of small documents, plan, chunk
(``per_batch`` documents a batch), dedupe (2 texts an embed batch) and embed with the bundled model."""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.spec import run_config
from ragtrail.stages.chunking import chunk_documents
from ragtrail.stages.dedupe import unique_texts
from ragtrail.stages.embedding import embed_chunks
from ragtrail.stages.ingest import ingest_source
from ragtrail.stages.plan import plan_sync


def stage_run(root: Path, store: str, work: Path, docs: dict, product: str, version: str = "v1", per_batch: int = 3):
    """``(cfg, plan, chunked, dedupe, embedded)`` of one run over ``docs`` (name → text), written to ``root/src``
    (emptied first, so a second call is a re-ingest of the new texts)."""
    src = root / "src"
    src.mkdir(exist_ok=True)
    for p in src.iterdir():
        p.unlink()
    for name, text in docs.items():
        (src / name).write_text(text)
    cfg = run_config({"source": str(src), "product": product, "version": version, "docs_per_batch": per_batch})
    got = ingest_source(cfg.source, work)
    plan = plan_sync(got["docs_path"], work, location=store, product=cfg.product, version=cfg.version,
                     config=cfg.version_config(), docs_per_batch=cfg.docs_per_batch)
    chunked = [chunk_documents(b["docs_path"], work, product=cfg.product, out_name=f"batches/chunks_{b['batch']:05d}.parquet")
               for b in plan["batches"]]
    dedupe = unique_texts([c["chunks_path"] for c in chunked], work, held_path=plan["held_path"], texts_per_batch=2)
    embedded = [embed_chunks(b["texts_path"], work, out_name=f"embed/vectors_{b['batch']:05d}.npy",
                             backend=cfg.embed_backend) for b in dedupe["batches"]]
    return cfg, plan, chunked, dedupe, embedded
