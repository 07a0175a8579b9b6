"""Write groups: each writer reads only the embed batches dedupe says its chunk batches need, several writers
give the same points as one, and a writer run again (a retry after a crash, or a duplicate) writes the same ids
— no duplicate, no stale point once the index stage has read the receipts.

Real stages (ingest, plan, chunk, dedupe, embed with the bundled model, write, index) on an Edge store in a
temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from staged import stage_run

from ragtrail.stages import writing
from ragtrail.stages.indexing import finish_index, index_run
from ragtrail.stages.receipts import stale_of
from ragtrail.store import open_store

SHARED = "Every station logs its readings in the shared maintenance ledger before the shift ends."
DOCS = {f"doc{i:02d}.txt": f"Note {i}: the {w} of station {i} is checked every {i + 2} days by the crew."
        for i, w in enumerate("pump valve boiler filter gauge relay fan hatch winch drain cable lamp".split())}
DOCS["doc10.txt"] = SHARED  # the same text as doc01's, three chunk batches later: no second embedding
DOCS["doc01.txt"] = SHARED


def _stage(root: Path, store: str, work: Path, docs: dict, version: str = "v1", per_batch: int = 3):
    """Ingest, plan, chunk (3 documents a batch: 4 batches) and dedupe (2 texts an embed batch), embed."""
    cfg, plan, chunked, dedupe, embedded = stage_run(root, store, work, docs, "wg", version, per_batch)
    return cfg, plan, chunked, dedupe["needs"], embedded


def _points(store: str, name: str) -> dict:
    with open_store(store) as s:
        return {str(p.id): (p.payload["doc_id"], p.payload["chunk_index"], p.payload["chunk_hash"], p.vector)
                for p in s.scroll(name, ["doc_id", "chunk_index", "chunk_hash"], with_vectors=True)}


def _same(a: dict, b: dict, vectors: bool = True) -> None:
    """The same ids, documents, positions and texts; with ``vectors``, the same vectors (embedded in the same
    batches: the int8 model's vectors shift a little with what else is in the batch)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][:3] == b[k][:3] and (not vectors or np.allclose(a[k][3], b[k][3], atol=1e-5)), k


def _groups(cfg, chunked, needs, embedded, store, work, groups: list[list[int]], **kw) -> list[dict]:
    """One write per group of chunk batches, each given only the embed batches its batches need."""
    out = []
    for g, batches in enumerate(groups):
        wanted = sorted({e for b in batches for e in needs[b]})
        out.append(writing.write_points(location=store, product=cfg.product, version=cfg.version,
                                        config=cfg.version_config(), chunk_paths=[chunked[b]["chunks_path"] for b in batches],
                                        embedded=[embedded[e] for e in wanted], workdir=work, group=g, **kw))
    return out


def test_dedupe_names_the_earlier_embed_batch_a_repeated_text_sits_in(tmp_path):
    """doc10 repeats doc01's text: its chunk batch (the last) needs the first embed batch, and nothing else."""
    _, _, chunked, needs, embedded = _stage(tmp_path, str(tmp_path / "store"), tmp_path / "work", DOCS)
    assert len(chunked) == 4 and len(embedded) == 6
    assert needs[0][0] == 0 and needs[3][0] == 0 and all(needs[i] == sorted(needs[i]) for i in range(4))
    assert sum(len(n) for n in needs) < 4 * len(embedded)  # no batch needs every embed batch


def test_several_writers_give_the_points_of_one(tmp_path):
    """Three write groups (each reading only its embed batches), then the index stage: the same points, ids and
    vectors as one writer over everything; nothing skipped."""
    store, work = str(tmp_path / "store"), tmp_path / "work"
    cfg, plan, chunked, needs, embedded = _stage(tmp_path, store, work, DOCS)
    receipts = _groups(cfg, chunked, needs, embedded, store, work, [[0, 1], [2], [3]])
    assert [r["docs_skipped"] for r in receipts] == [0, 0, 0] and sum(r["docs_written"] for r in receipts) == len(DOCS)
    out = finish_index(location=store, product=cfg.product, version=cfg.version, receipts=receipts, deleted_docs=[],
                       workdir=work)
    assert out["upserted"] == out["vectors"] == len(DOCS) and out["deleted"] == 0
    one = index_run(location=store, product=cfg.product, version="one", config=cfg.version_config(),
                    chunk_paths=[c["chunks_path"] for c in chunked], embedded=embedded, deleted_docs=[], workdir=work)
    assert one["vectors"] == len(DOCS)
    _same(_points(store, "wg__v1"), _points(store, "wg__one"))
    manifest = [json.loads(line) for line in (work / "index_manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == len(DOCS)


def test_a_writer_run_again_leaves_no_duplicate_or_stale_point(tmp_path, monkeypatch):
    """An update (doc03 grows to several chunks, then shrinks back: stale points): group 0's writer dies after its
    first upsert, runs again (the retry) and once more (a duplicate); after the index stage the collection is
    exactly a clean build of the new source."""
    store, work = str(tmp_path / "store"), tmp_path / "work"
    long = {**DOCS, "doc03.txt": " ".join(f"Paragraph {j} of the filter log says reading {j} was normal." for j in range(120))}
    cfg, plan, chunked, needs, embedded = _stage(tmp_path, store, work, long)
    first = _groups(cfg, chunked, needs, embedded, store, work, [[0, 1], [2, 3]])
    finish_index(location=store, product=cfg.product, version=cfg.version, receipts=first, deleted_docs=[], workdir=work)
    before = _points(store, "wg__v1")
    assert sum(d == "doc03.txt" for d, *_ in before.values()) > 3

    work2 = tmp_path / "work2"
    changed = {**DOCS, "doc03.txt": "Note 3: the filter was replaced.", "doc09.txt": "Note 9: the drain is new.",
               "doc11.txt": "Note 11: the lamp was moved."}
    cfg, plan, chunked, needs, embedded = _stage(tmp_path, store, work2, changed, per_batch=1)
    assert len(chunked) == 3
    monkeypatch.setattr(writing, "UPSERT_BATCH", 1)
    real, fired = writing.failpoint, []

    def crash_once(name, workdir=None):
        if name == "write.after_upsert_1" and not fired:
            fired.append(name)
            raise RuntimeError("killed after the first upsert")
        return real(name, workdir)

    monkeypatch.setattr(writing, "failpoint", crash_once)
    with pytest.raises(RuntimeError, match="killed"):
        _groups(cfg, chunked, needs, embedded, store, work2, [[0]])
    again = _groups(cfg, chunked, needs, embedded, store, work2, [[0], [1, 2]])
    twin = _groups(cfg, chunked, needs, embedded, store, work2, [[0]])[0]  # a duplicate of group 0
    assert stale_of(twin["receipt_path"]) == stale_of(again[0]["receipt_path"])
    out = finish_index(location=store, product=cfg.product, version=cfg.version, receipts=[twin, again[1]],
                       deleted_docs=json.loads(Path(plan["deleted_path"]).read_text()) if plan.get("deleted_path") else [],
                       workdir=work2)
    assert out["deleted"] > 0
    clean_work = tmp_path / "clean"
    cfg_c, _, chunked_c, _, embedded_c = _stage(tmp_path, store, clean_work, changed, version="clean")
    index_run(location=store, product=cfg.product, version="clean", config=cfg.version_config(),
              chunk_paths=[c["chunks_path"] for c in chunked_c], embedded=embedded_c, deleted_docs=[], workdir=clean_work)
    _same(_points(store, "wg__v1"), _points(store, "wg__clean"), vectors=False)


def test_an_index_without_recorded_write_groups_says_dedupe_did_not_finish(tmp_path):
    """Dedupe failed, so no write group was recorded: the index task's reason names that, not "all 0 write
    groups failed"."""
    import json

    import pytest

    from ragtrail.core.spec import RunConfig
    from ragtrail.stages.index_results import finish_from_receipts
    from ragtrail.stages.plan import PLAN_FILE

    (tmp_path / PLAN_FILE).write_text(json.dumps({"batches": [{"batch": 0}]}))
    with pytest.raises(RuntimeError, match=r"no write groups were recorded \(dedupe did not finish\)"):
        finish_from_receipts([], RunConfig(product="p", version="v1"), tmp_path, groups=0)
