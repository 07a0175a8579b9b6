"""The roll-up rule: FINISHED when all units succeed, PARTIAL when the index was published despite
failures, FAILED when it was not."""

from __future__ import annotations

from ragtrail.trail.rollup import Unit, rollup_status


def units(**states):
    return [Unit(name.split("_")[0], int(name.split("_")[1]) if "_" in name else -1, s) for name, s in states.items()]


def test_all_finished():
    assert rollup_status(units(ingest="FINISHED", chunk="FINISHED", embed="FINISHED", index="FINISHED")).status == "FINISHED"


def test_index_never_ran_is_failed():
    roll = rollup_status(units(ingest="FINISHED", chunk="FAILED", embed="UPSTREAM_FAILED", index="UPSTREAM_FAILED"))
    assert roll.status == "FAILED"
    assert roll.reasons == ["chunk: failed", "not run because of the failure above: embed, index"]


def test_failed_batch_but_published_index_is_partial():
    roll = rollup_status(units(ingest="FINISHED", embed_0="FINISHED", embed_1="FAILED", index="FINISHED"))
    assert roll.status == "PARTIAL" and roll.reasons == ["embed[1]: failed"]


def test_killed_index_is_failed_and_no_units_is_failed():
    assert rollup_status(units(ingest="FINISHED", index="KILLED")).status == "FAILED"
    assert rollup_status([]).status == "FAILED"


def test_metrics_sum_over_successful_units_and_vector_count_is_a_level():
    roll = rollup_status([Unit("chunk", 0, "FINISHED", {"chunk_count": 3}), Unit("chunk", 1, "FINISHED", {"chunk_count": 4}),
                          Unit("index", -1, "FINISHED", {"vector_count": 7})])
    assert roll.metrics["chunk_count"] == 7 and roll.metrics["vector_count"] == 7 and roll.metrics["tasks_failed"] == 0


def test_a_failed_ingest_is_named_once_and_what_it_stopped_shares_one_line():
    """Downstream tasks skipped or upstream_failed behind the cause are consequences, not more causes."""
    roll = rollup_status([Unit("ingest", -1, "FAILED", error="AirflowFailException: no usable documents"),
                          Unit("plan", -1, "UPSTREAM_FAILED"), Unit("chunk", -1, "UPSTREAM_FAILED"),
                          Unit("dedupe", -1, "SKIPPED"), Unit("embed", -1, "SKIPPED"), Unit("index", -1, "SKIPPED"),
                          Unit("evaluate", -1, "UPSTREAM_FAILED")])
    assert roll.status == "FAILED"
    assert roll.reasons == ["ingest: failed (AirflowFailException: no usable documents)",
                            "not run because of the failure above: plan, chunk, index, evaluate"]


def test_a_skipped_publishing_task_is_not_a_published_index():
    assert rollup_status(units(ingest="FINISHED", chunk="FAILED", index="SKIPPED")).status == "FAILED"
