"""Shards of a source (issue #28): a key range lists only its own keys, the ranges of a split cover the source
exactly once, and the split takes its boundaries from the version's state without touching the source."""

from __future__ import annotations

import pytest
from conftest import put_objects, write_corpus

from ragtrail.sources import walk
from ragtrail.sources.listing import iter_s3, iter_source
from ragtrail.sources.walk import KeyRange
from ragtrail.stages.split import boundaries, read_shard, shard_ranges, split_source
from ragtrail.stages.sync_state import create_state

NAMES = ["a.md", "a-b.md", "a/x.md", "a/y/z.md", "b.md", "b/c.md", "bb.md", "c/d/e.md", "c/d/f.md", "é.md"]


def _keys(items) -> list[str]:
    return [i.doc_id for i in items]


def test_key_range_bounds():
    r = KeyRange("b.md", "c/d/e.md")
    assert [k for k in sorted(NAMES) if r.holds(k)] == ["b/c.md", "bb.md", "c/d/e.md"]
    assert r.before_all("a/") and not r.before_all("b/") and not KeyRange("a/y/z.md", None).before_all("a/")
    assert r.past("c/d/f.md") and not r.past("c/d/e.md") and not KeyRange().past("zzz")


@pytest.mark.parametrize("per", [1, 2, 3, 4, 9, 10, 50])
def test_the_ranges_of_a_split_cover_a_folder_exactly_once(tmp_path, per):
    corpus = write_corpus(tmp_path / "src", {n: f"text of {n}" for n in NAMES})
    whole = _keys(iter_source(str(corpus)))
    assert whole == sorted(NAMES)  # the walk's key order is the strings' order
    cuts, used, n = boundaries(whole, per)
    assert n == len(NAMES) and used == per
    parts = [_keys(iter_source(str(corpus), key_range=r)) for r in shard_ranges(cuts)]
    assert [k for part in parts for k in part] == whole and all(parts)
    assert max(len(p) for p in parts) <= per


def test_a_shard_does_not_walk_folders_outside_its_range(tmp_path, monkeypatch):
    """A range after every key of ``a/`` never lists ``a/`` (nor ``a/y/``); the walk ends at the first key past
    the range (``c/`` and ``c/d/`` are never listed)."""
    corpus = write_corpus(tmp_path / "src", {n: "x" for n in NAMES})
    listed = []
    real = walk._Walk.folder

    def spy(self, folder):
        listed.append(self.rel(folder) if folder != self.top else "")
        return real(self, folder)

    monkeypatch.setattr(walk._Walk, "folder", spy)
    assert _keys(iter_source(str(corpus), key_range=KeyRange("b.md", "bb.md"))) == ["b/c.md", "bb.md"]
    assert listed == ["", "b"]
    listed.clear()  # a range that starts inside a/ must enter it: a/y/zz.md would sort after a/y/z.md
    assert _keys(iter_source(str(corpus), key_range=KeyRange("a/y/z.md", "b.md"))) == ["b.md"]
    assert listed == ["", "a", "a/y"]


def test_an_s3_shard_lists_from_its_first_key(s3_server):
    """StartAfter: a shard's listing starts at its range, not at the prefix's first key, and stops past it."""
    put_objects(s3_server.client, "ranges", {f"docs/{n}": "x" for n in NAMES} | {"other/zz.md": "y"})
    whole = _keys(iter_s3("s3://ranges/docs", s3_server.client))
    assert whole == sorted(NAMES)
    cuts, _, _ = boundaries(whole, 3)
    parts = [_keys(iter_s3("s3://ranges/docs", s3_server.client, key_range=r)) for r in shard_ranges(cuts)]
    assert [k for part in parts for k in part] == whole

    seen = []

    class Counting:  # what S3 actually sent back, page by page
        def get_paginator(self, name):
            pager = s3_server.client.get_paginator(name)

            class P:
                def paginate(self, **kw):
                    for page in pager.paginate(**kw):
                        seen.extend(o["Key"] for o in page.get("Contents", ()))
                        yield page
            return P()

    r = KeyRange("b.md", "bb.md")
    assert _keys(iter_s3("s3://ranges/docs", Counting(), page_size=2, key_range=r)) == ["b/c.md", "bb.md"]
    assert seen[0] == "docs/b/c.md" and len(seen) <= 4  # from the range's first key; at most one page past it


def test_an_empty_range_of_a_prefix_is_not_taken_for_a_single_object(s3_server):
    put_objects(s3_server.client, "ranges2", {"docs/a.md": "x"})
    assert _keys(iter_s3("s3://ranges2/docs", s3_server.client, key_range=KeyRange("a.md", None))) == []


def test_boundaries_grow_the_shards_past_the_map_limit():
    keys = [f"k{i:05d}" for i in range(10_000)]
    cuts, used, n = boundaries(iter(keys), 10, max_shards=64)
    assert n == 10_000 and len(cuts) + 1 <= 64 and used == 160  # 10 → 20 → 40 → 80 → 160 keys a shard
    sizes = [sum(1 for k in keys if r.holds(k)) for r in shard_ranges(cuts)]
    assert sum(sizes) == 10_000 and max(sizes) == 160


def test_a_split_from_the_state_never_touches_the_source(tmp_path):
    """With this collection's state, the boundaries come from its keys: a source that no longer exists (or an S3
    client that would fail) is not listed; with another collection's stamp, it is."""
    state = tmp_path / "state.sqlite"
    conn = create_state(state)
    conn.executemany("INSERT INTO docs VALUES (?, ?, '1', 1, '', 'h', 'c', 'indexed')",
                     [(f"k{i:03d}", f"k{i:03d}") for i in range(25)] + [("k010", "k010#row2")])
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [("stamp", "S1"), ("fingerprint", "F")])
    conn.commit()
    conn.close()

    def no_s3():
        raise AssertionError("the split listed the source")

    out = split_source("s3://gone/prefix", tmp_path / "w", docs_per_shard=10, s3_client=no_s3, state_path=state,
                       state_stamp="S1", state_fingerprint="F")
    assert (out["split_from"], out["keys"], out["shards"]) == ("source state", 25, 3)
    assert read_shard(out["split_path"], 1)[:2] == (KeyRange("k009", "k019"), 3)
    with pytest.raises(FileNotFoundError):  # another collection's state: the source is listed (and is not there)
        split_source(str(tmp_path / "no-such-folder"), tmp_path / "w2", docs_per_shard=10, state_path=state,
                     state_stamp="S2", state_fingerprint="F")
    with pytest.raises(ValueError, match="not one of the 3 shards"):
        read_shard(out["split_path"], 3)
