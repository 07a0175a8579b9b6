"""The write groups are the run's (issue 28): dedupe cuts the run's chunk batches into groups of bounded size, never
across an embedded store's part, records them in ``write_groups.json``, and the ``write_groups`` task hands their
numbers to the mapped write task; the index task names the recorded groups that left no receipt."""

from __future__ import annotations

import json
from types import SimpleNamespace

from ragtrail.core.workstore import open_run
from ragtrail.store.edge_parts import bounds_from_batches, part_of
from ragtrail_airflow.rag import write_tasks
from ragtrail_airflow.rag.write_tasks import cut_groups, group_plan, record_needs, write_groups, write_label


def spans_ok(groups: list[list[int]], batches: int) -> None:
    """Contiguous, non-empty, covering every batch once, in order."""
    assert groups[0][0] == 0 and groups[-1][1] == batches
    assert all(a < b for a, b in groups) and all(g[1] == h[0] for g, h in zip(groups[:-1], groups[1:], strict=True))


def corpus(n_batches: int, points: int) -> list[tuple[str, int]]:
    return [(f"doc{i * 1000:09d}", points) for i in range(n_batches)]


def test_a_groups_points_stay_bounded_as_the_corpus_grows():
    """20k, 80k, 320k points in batches of 5,000: every group holds 20,000 points at most, so the number of
    groups (not their size) follows the corpus. Before (the DAG's fixed groups) one group held N / groups."""
    for n_batches in (4, 16, 64):
        batches = corpus(n_batches, 5000)
        groups = cut_groups(batches, [], 20000)
        spans_ok(groups, n_batches)
        assert max(sum(p for _, p in batches[a:b]) for a, b in groups) == 20000
        assert len(groups) == n_batches // 4


def test_a_group_never_spans_two_parts_and_at_least_some_groups():
    batches = corpus(12, 3000)
    bounds = bounds_from_batches(batches, 8000)  # a part every 3 batches (9,000 points)
    assert len(bounds) == 3
    for per_group, at_least in ((0, 1), (20000, 1), (5000, 1), (0, 6)):
        groups = cut_groups(batches, bounds, per_group, at_least)
        spans_ok(groups, 12)
        for a, b in groups:
            assert len({part_of(bounds, first) for first, _ in batches[a:b]}) == 1
        assert len(groups) >= max(at_least, 4)
    assert cut_groups(batches, [], 0, 3) == [[0, 4], [4, 8], [8, 12]]  # RAGTRAIL_WRITE_TASKS: at least 3


def test_failed_batches_ride_along_and_there_are_never_more_groups_than_batches():
    batches = [("a", 10), (None, 0), ("c", 10), (None, 0)]
    assert cut_groups(batches, [], 10) == [[0, 2], [2, 4]]
    assert cut_groups([(None, 0), ("a", 10), ("b", 10)], [], 10) == [[0, 2], [2, 3]]  # a failed first batch too
    assert cut_groups([(None, 0)] * 3, [], 10) == [[0, 3]]  # every chunk batch failed: one group, nothing to write
    many = cut_groups(batches, [], 1, at_least=100)
    spans_ok(many, 4)
    assert len(many) <= 4
    assert cut_groups([], [], 10) == []


def test_ten_million_documents_stay_under_the_map_limit_and_a_small_xcom():
    """At 10M documents the plan makes at most max_map_length (1,024) chunk batches (~9,766 documents, ~30k
    points each): at most one group per batch, and the write_groups XCom is a few KB (limit 64 KB)."""
    batches = corpus(1024, 30000)
    bounds = bounds_from_batches(batches, 20000)
    groups = cut_groups(batches, bounds, 20000, 4)
    assert len(groups) == 1024 and len(json.dumps(list(range(len(groups))))) < 8 * 1024
    assert len(json.dumps(groups)) < 64 * 1024


def test_dedupe_records_the_groups_and_the_tasks_read_them(tmp_path, monkeypatch):
    """record_needs (dedupe) writes the groups; write_groups returns their numbers; group_plan gives a writer its
    chunk batches and only the embed batches they need."""
    monkeypatch.setenv("RAGTRAIL_EDGE_PART_POINTS", "4")
    monkeypatch.setenv("RAGTRAIL_WRITE_GROUP_POINTS", "4")
    monkeypatch.delenv("RAGTRAIL_WRITE_TASKS", raising=False)
    work = open_run("dag", "run1", url=None, local_root=tmp_path)
    chunked = [{"batch": b, "first_doc": f"d{b}", "chunks": 2, "chunks_path": f"c{b}"} for b in range(6) if b != 3]
    needs = [[b // 2] for b in range(6) if b != 3]
    assert record_needs(work, chunked, needs, 6) == 3
    recorded = json.loads((work.local / write_tasks.WRITE_GROUPS).read_text())
    # parts begin at d2 and d5 (4 points each; batch 3 failed); the failed batch rides with group 1
    assert recorded["parts"] == ["d2", "d5"] and recorded["groups"] == [[0, 2], [2, 5], [5, 6]]
    import ragtrail_airflow.rag.s3 as s3

    monkeypatch.setattr(s3, "open_work", lambda dag_id, run_id: work)
    assert write_groups(dag_run=SimpleNamespace(dag_id="dag", run_id="run1")) == [0, 1, 2]
    plan = group_plan(recorded, 1)
    assert plan == {"group": 1, "first": 2, "end": 5, "embed_batches": [1, 2]}  # batch 3 failed: it needs none
    assert write_label(plan) == "chunks 2-4"


def test_a_run_begun_by_an_earlier_release_keeps_its_fixed_groups():
    """Its DAG passed the number of groups (``partial(groups=…)``) and its dedupe recorded none."""
    recorded = {"needs": [[0], [0], [1], [1], [2]], "parts": []}
    assert [group_plan(recorded, g, 2)["first"] for g in range(2)] == [0, 3]
    assert group_plan(recorded, 1, 2) == {"group": 1, "first": 3, "end": 5, "embed_batches": [1, 2]}
