"""The roll-up's decision as a pure function (``ragtrail_airflow.rag.verdict``): plain facts in, status,
reasons, summary and the parent run's figures out — no Airflow, no MLflow."""

from __future__ import annotations

import subprocess
import sys

from ragtrail.trail.rollup import FAILED, FINISHED, PARTIAL, Unit
from ragtrail_airflow.rag.verdict import RunFacts, airflow_units, decide, parent_run_figures, quality_metrics

TASKS = ["ingest", "chunk", "index", "evaluate"]


def facts(states: dict[str, str], results: dict | None = None, **kw) -> RunFacts:
    return RunFacts(product="p", version="v1", dag_id="rag_ingest", run_id="r1", task_ids=TASKS,
                    airflow_units=airflow_units(states, TASKS), results=results or {}, **kw)


ALL_GOOD = {"ingest": "success", "chunk_0": "success", "chunk_1": "success", "index": "success",
            "evaluate": "success"}
RESULTS = {"ingest": {"docs": 3, "quarantined": 1}, "chunk": [{"chunks": 4}, {"chunks": 2}],
           "index": {"vectors": 6, "collection": "p__v1"}, "evaluate": {"gate": "passed", "promoted": True}}


def test_airflow_states_map_to_units_by_map_index_and_a_silent_task_never_ran():
    units = airflow_units({"ingest": "success", "chunk_0": "success", "chunk_12": "failed", "index": None}, TASKS)
    assert units == {("ingest", -1): "success", ("chunk", 0): "success", ("chunk", 12): "failed",
                     ("index", -1): "none", ("evaluate", -1): "none"}


def test_every_task_succeeded_untracked_is_finished_with_the_run_in_figures():
    roll, summary = decide(facts(ALL_GOOD, RESULTS, planned={"docs_added": 3}, duration_s=12.34567))
    assert (roll.status, roll.reasons) == (FINISHED, [])
    assert (summary["docs"], summary["docs_failed"], summary["docs_added"], summary["chunks"],
            summary["vectors"]) == (3, 1, 3, 6, 6)
    assert summary["promotion"] == "promoted by the gate" and summary["promoted"] is True
    assert summary["tasks"] == {"ingest": "SUCCESS", "chunk[0]": "SUCCESS", "chunk[1]": "SUCCESS",
                                "index": "SUCCESS", "evaluate": "SUCCESS"}
    assert summary["duration_s"] == 12.346
    assert summary["trail"] == {"complete": None, "missing_runs": [], "closed_runs": [], "error": None}


def test_a_failed_batch_behind_a_published_index_is_partial_and_a_failed_index_is_failed():
    roll, summary = decide(facts({**ALL_GOOD, "chunk_1": "failed"}, RESULTS))
    assert (roll.status, roll.reasons) == (PARTIAL, ["chunk[1]: failed"])
    assert summary["reasons"] == roll.reasons
    roll, _ = decide(facts({**ALL_GOOD, "index": "failed", "evaluate": "upstream_failed"}, RESULTS))
    assert roll.status == FAILED and roll.reasons[0] == "index: failed"


def test_a_version_the_gate_held_back_is_partial():
    held = {**RESULTS, "evaluate": {"gate": "rejected", "reason": "below min_ndcg", "promoted": False}}
    roll, summary = decide(facts(ALL_GOOD, held))
    assert (roll.status, roll.reasons) == (PARTIAL, ["evaluate: not promoted (below min_ndcg)"])
    assert summary["promotion"] == "not promoted, held back by the gate"


def test_mlflow_units_decide_when_read_and_the_trail_says_whether_it_is_complete():
    units = [Unit("ingest", -1, "FINISHED"), Unit("index", -1, "FAILED")]  # MLflow's word wins over Airflow's
    roll, summary = decide(facts(ALL_GOOD, RESULTS, units=units,
                                 trail={"missing_runs": [], "closed_runs": ["index"], "error": None}))
    assert roll.status == FAILED and summary["tasks"] == {"ingest": "FINISHED", "index": "FAILED"}
    assert summary["trail"]["complete"] is False
    _, summary = decide(facts(ALL_GOOD, RESULTS, units=[Unit(t, -1, "FINISHED") for t in TASKS],
                              trail={"missing_runs": [], "closed_runs": [], "error": None}))
    assert summary["trail"]["complete"] is True


def test_the_parent_run_is_warned_when_a_worse_version_went_live():
    worse = {**RESULTS, "evaluate": {"gate": "passed", "promoted": True, "promoted_worse": True,
                                     "reason": "0.01 below live, not significant"}}
    roll, summary = decide(facts(ALL_GOOD, worse))
    _, tags = parent_run_figures(roll, [], summary)
    assert tags["ragtrail.warnings"] == "promoted although worse than live: 0.01 below live, not significant"
    assert tags["ragtrail.gate"] == "passed" and tags["ragtrail.promotion"] == "promoted by the gate"


def test_the_decision_imports_no_airflow():
    code = ("import sys, ragtrail_airflow.rag.verdict; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'mlflow')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_quality_reaches_the_parent_run_and_a_worse_promotion_is_marked():
    summary = {"eval": {"ndcg_at_10": 0.96, "recall_at_10": 1.0, "mrr_at_10": 0.9, "latency_p95_ms": 41.0,
                        "hit_rate": 1.0},
               "gate": "passed", "promoted_worse": True, "vs_live": {"delta": -0.013, "p_value": 0.31, "queries": 30}}
    assert quality_metrics(summary) == {"ndcg_at_10": 0.96, "recall_at_10": 1.0, "mrr_at_10": 0.9,
                                        "latency_p95_ms": 41.0, "ndcg_delta_vs_live": -0.013,
                                        "ndcg_p_value_vs_live": 0.31, "promoted_worse": 1.0}


def test_no_evaluation_no_quality_metrics():
    assert quality_metrics({"eval": None, "gate": None, "vs_live": None}) == {}
