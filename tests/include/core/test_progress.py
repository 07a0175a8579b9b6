"""Progress lines come at a bounded rate with done/total, rate and ETA; per-batch figures become step metrics."""

from __future__ import annotations

import logging

from ragtrail.core.progress import Progress, result_counts, run_stage
from ragtrail.core.recorder import Recorder


def test_lines_are_rate_limited_and_the_last_one_has_counts_and_time(caplog):
    caplog.set_level(logging.INFO, logger="ragtrail.progress")
    rec = Recorder()
    p = Progress("embed", 1000, "texts", recorder=rec, interval_s=3600)
    for _ in range(10):
        p.update(100, batch_s=0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]  # within the interval: silent
    line = p.finish(backend="torch")
    assert line.startswith("embed: 1,000 texts in ") and "texts/s" in line and "backend torch" in line
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [line]
    steps = [(k, v, s) for k, v, s, _ in rec.steps if k == "embed_done"]
    assert steps == [("embed_done", 100.0 * i, i) for i in range(1, 11)]
    assert {k for k, *_ in rec.steps} == {"embed_done", "embed_per_s", "embed_batch_s"}


def test_a_due_line_says_done_total_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="ragtrail.progress")
    p = Progress("chunk", 400, "documents", interval_s=0)
    p.update(100)
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert msg.startswith("chunk: 100/400 documents (25 %), ") and "documents/s" in msg and "ETA" in msg


def test_run_stage_frames_a_task_with_start_and_end_lines(caplog):
    caplog.set_level(logging.INFO, logger="ragtrail.progress")
    assert run_stage("chunk[3]", lambda: {"chunks": 12, "docs": 4, "chunks_path": "x", "ok": True}) == {
        "chunks": 12, "docs": 4, "chunks_path": "x", "ok": True}
    start, end = (r.getMessage() for r in caplog.records)
    assert start == "chunk[3]: started" and end.startswith("chunk[3]: finished in ") and end.endswith("(chunks 12, docs 4)")
    assert result_counts([{}, {}]) == "2 batches" and result_counts([0, 1], "split") == "2 shards"
    assert result_counts([0], "split") == "1 shard" and result_counts([0]) == "1 batch"
