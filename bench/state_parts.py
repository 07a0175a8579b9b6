"""What a re-ingest costs the source state: each ingest shard's merge and the index task's commit, for edits
scattered over the whole key space and for edits within one shard (``python bench/state_parts.py``).

One-line local files (``--docs``, ``--docs-per-shard`` per shard), a first build, then ``--rounds`` rounds of
``--edits`` edited files each way: the split, every ingest shard (stage code, in this process) and the commit
(:func:`ragtrail.stages.state_commit.commit_state` + ``StateFile.commit``), as the pipeline calls them. Reports
seconds per shard and per commit, the bytes the commit wrote to the state folder, and what one ingest shard
would download from a work store (its part, or the whole one-file state). Run the same script under an earlier
tree (``PYTHONPATH=<tree>/include:<tree>/plugins``) for its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

STAMP = '"bench"'


def _corpus(src: Path, n: int) -> None:
    for i in range(n):
        folder = src / f"d{i // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{i:07d}.md").write_text(f"Body of document {i}.\n")


def _state_files(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Each file of the state folder: (size, inode, mtime): a file written anew changes one of them."""
    if not folder.exists():
        return {}
    return {p.name: (st.st_size, st.st_ino, st.st_mtime_ns) for p in folder.iterdir() if p.is_file()
            for st in [p.stat()]}


def _run(state, src: Path, work: Path, per_shard: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ragtrail.stages.ingest import ingest_source
    from ragtrail.stages.split import gather, read_split, split_source
    from ragtrail.stages.state_commit import commit_state

    split = split_source(str(src), work, docs_per_shard=per_shard, state_path=state.fetch(work), state_stamp=STAMP)
    ranges, _ = read_split(split["split_path"])
    outs, shard_s = [], []
    for i, r in enumerate(ranges):
        t0 = time.perf_counter()
        outs.append(ingest_source(str(src), work / f"s{i}", state_path=state.fetch(work / f"f{i}"), state_stamp=STAMP,
                                  key_range=r, shard=f"{i + 1} of {len(ranges)}"))
        shard_s.append(time.perf_counter() - t0)
    try:
        out = gather(outs, work, ranges)
    except TypeError:  # an earlier tree: gather takes no ranges
        out = gather(outs, work)
    docs = [d for p in out["docs_paths"] for d in pq.read_table(p, columns=["doc_id"]).column(0).to_pylist()]
    chunks = work / "chunks.parquet"
    pq.write_table(pa.table({"chunk_hash": [f"h-{d}-{work.name}" for d in docs], "doc_id": docs}), chunks)
    folder = Path(state.location) if not str(state.location).endswith(".sqlite") else Path(state.location).parent
    before = _state_files(folder)
    t0 = time.perf_counter()
    commit_state(work / "after", base_path=state.fetch(work / "index"), delta_path=out["delta_path"],
                 chunk_paths=[str(chunks)], changed=set(docs), written=set(docs), deleted=set(), missing_hashes=set(),
                 stamp=STAMP)
    state.commit(work / "after")
    commit_s = time.perf_counter() - t0
    after = _state_files(folder)
    written = sum(f[0] for name, f in after.items() if before.get(name) != f)
    files = [f[0] for name, f in after.items() if name.endswith(".sqlite") and name in _current(folder)]
    return {"shards": len(ranges), "shard_s": [round(s, 3) for s in shard_s], "commit_s": round(commit_s, 3),
            "bytes_written": written, "objects_read": out["objects_read"],
            "shard_download_bytes": max(files) if len(files) == 1 else round(statistics.median(files))}


def _current(folder: Path) -> set[str]:
    """The state files a reader uses now: the manifest's parts (a one-file state: that file)."""
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return {"source_state.sqlite"}
    return {p["file"] for p in json.loads(manifest.read_text())["parts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=80_000)
    ap.add_argument("--docs-per-shard", type=int, default=10_000)
    ap.add_argument("--edits", type=int, default=80, help="files edited per round (0.1 %% of 80,000)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--home", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="ragtrail-bench-state-"))
    os.environ["RAGTRAIL_HOME"] = str(home)
    from ragtrail.core.statefile import open_state

    src = home / "corpus"
    _corpus(src, args.docs)
    state = open_state("benchstate__v1", url="", local_root=home / "work")
    rows = {"first build": [_run(state, src, home / "r0", args.docs_per_shard)]}
    rnd = random.Random(7)
    for r in range(args.rounds):
        for how, pool in (("scattered", range(args.docs)), ("one shard", range(args.docs_per_shard))):
            for i in rnd.sample(pool, args.edits):
                path = src / f"d{i // 1000:04d}" / f"doc{i:07d}.md"
                path.write_text(path.read_text() + f"edit {r}\n")
            rows.setdefault(how, []).append(_run(state, src, home / f"r{r}-{how.replace(' ', '')}", args.docs_per_shard))
    for how, runs in rows.items():
        print(f"{how:12s} shards {runs[0]['shards']}: shard s (median) "
              f"{statistics.median(s for r in runs for s in r['shard_s']):.3f}; commit s "
              f"{', '.join(str(r['commit_s']) for r in runs)}; bytes written {runs[-1]['bytes_written']:,}; "
              f"one shard's download {runs[-1]['shard_download_bytes']:,} B")
    if args.out:
        Path(args.out).write_text(json.dumps({"label": args.label, "docs": args.docs, "edits": args.edits,
                                              "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
