"""The approve task: who waits, what the reviewer reads, and how an answer — or no answer — is recorded."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from ragtrail_airflow.rag.approval import (
    PromotionApproval,
    approval_body,
    needs_approval,
    prompt_text,
)
from ragtrail_airflow.rag.verdict import promotion_outcome

DECISION = {"collection": "p__v2", "live": "p__v1", "gate": "rejected", "reason": "nDCG@10 0.5 is worse …",
            "metrics": {"ndcg_at_10": 0.5, "recall_at_10": 0.7}, "live_metrics": {"ndcg_at_10": 0.9, "recall_at_10": 1.0},
            "vs_live": {"better": [{"query_id": "q3", "delta": 0.2}], "worse": [{"query_id": "q1", "delta": -1.0}]},
            "awaiting_approval": True}


def test_who_waits_for_a_person():
    assert needs_approval("always", {"gate": "passed"}) and needs_approval("held", {"gate": "rejected"})
    assert not needs_approval("held", {"gate": "passed"}) and not needs_approval("off", {"gate": "rejected"})


def test_the_reviewer_sees_both_versions_the_moved_questions_and_both_runs():
    body = approval_body(DECISION, "http://mlflow/new", "http://mlflow/live")
    assert body.startswith("The gate held it back — nDCG@10 0.5 is worse …\n\n**Approve** makes p__v2 live "
                           "(replacing p__v1, overriding the gate) and moves @production to it.")
    assert "| nDCG@10 | 0.500 | 0.900 |" in body and "| recall@10 | 0.700 | 1.000 |" in body
    assert "Better (1): q3 +0.20" in body and "Worse (1): q1 -1.00" in body
    assert "(http://mlflow/new)" in body and "(http://mlflow/live)" in body


class _TI:
    pushed: dict = {}

    def xcom_pull(self, task_ids):
        return DECISION

    def xcom_push(self, key, value):
        self.pushed[key] = value


def test_no_answer_before_the_timeout_is_a_recorded_rejection(monkeypatch):
    """Airflow's timeout sweep resumes the task with the default (Reject) and no user: nothing moves, and it is
    recorded as timed out by "timeout" (the sweep itself needs a scheduler and a real wait)."""
    monkeypatch.setenv("RAGTRAIL_TRACKING", "off")
    op = PromotionApproval(task_id="approve")
    assert op.defaults == ["Reject"]
    event = {"chosen_options": ["Reject"], "params_input": {}, "responded_at": datetime(2026, 11, 28, tzinfo=UTC),
             "responded_by_user": None, "timedout": True}
    from airflow.sdk.exceptions import AirflowSkipException

    ti = _TI()
    with pytest.raises(AirflowSkipException, match="not promoted, no answer before the approval timeout"):
        op.execute_complete({"ti": ti, "params": {"source": "s", "product": "p", "version": "v2"}}, event)
    result = ti.pushed["return_value"]  # the roll-up reads the decision
    assert result["outcome"] == "timed_out" and result["by"] == "timeout"
    assert result["promoted"] is False and result["live"] == "p__v1"


# The verdicts ragtrail.stages.gate gives with promote on, and what it gives with promote off.
GATES = {True: ("passed", "rejected", "skipped"), False: ("not_requested", "rejected")}
REASONS = {"passed": "nDCG@10 0.9300 (live p__v1: 0.9100, min 0.0)", "rejected": "nDCG@10 0.5 is below min_ndcg 0.6",
           "skipped": "no query set: not evaluated, no gate", "not_requested": "promote is off; nDCG@10 0.9300"}


@pytest.mark.parametrize(("promote", "mode", "gate"), [
    (promote, mode, gate) for promote, mode in itertools.product((True, False), ("off", "held", "always"))
    for gate in GATES[promote]])
def test_the_prompt_states_the_verdict_and_what_approving_does(promote, mode, gate):
    """Every combination of promote, approval mode and the gate's verdict: who is asked, and the text. The gate's
    verdict is its own (evaluate no longer turns promote off under approval "always", which read "Gate: rejected —
    promote is off" while promote was on)."""
    decision = {"collection": "p__v2", "live": "p__v1", "gate": gate, "reason": REASONS[gate],
                "promoted": promote and gate != "rejected" and mode != "always"}
    asked, text = prompt_text(decision, mode, promote)
    assert asked == (promote and needs_approval(mode, decision))
    assert asked == (promote and (mode == "always" or (mode == "held" and gate == "rejected")))
    if not promote:
        assert text == "Promote is off for this run: p__v2 stays dark, nobody is asked."
        return
    assert "promote is off" not in text.lower()
    if not asked:
        went = "stays dark" if gate == "rejected" else "went live"
        assert text.startswith("No approval needed (") and text.endswith(f"and p__v2 {went}.")
        return
    verdict = {"passed": "The gate passed it", "rejected": "The gate held it back",
               "skipped": "The gate measured nothing"}[gate]
    override = ", overriding the gate" if gate == "rejected" else ""
    assert text == (f"{verdict} — {REASONS[gate]}\n\n**Approve** makes p__v2 live (replacing p__v1{override}) and "
                    "moves @production to it. **Reject** (or no answer before the timeout) keeps p__v1 live; "
                    "p__v2 stays @candidate.")


def test_the_prompt_for_a_first_build_and_for_a_re_index_of_the_live_version():
    first = {"collection": "p__v1", "live": None, "gate": "passed", "reason": "nDCG@10 0.9 (no live version, min 0.0)"}
    assert "makes p__v1 live (the first live version)" in prompt_text(first, "always", True)[1]
    again = {**first, "live": "p__v1", "reason": "nDCG@10 0.9 (re-index of the live version p__v1, min 0.0)"}
    assert "p__v1 is already live (this run re-indexed it in place)" in prompt_text(again, "always", True)[1]


def test_how_the_parent_run_reads_the_promotion():
    assert promotion_outcome({"promoted": True, "gate": "passed"}, None) == "promoted by the gate"
    assert promotion_outcome({"gate": "rejected"}, None) == "not promoted, held back by the gate"
    assert promotion_outcome({"gate": "not_requested"}, None) == "not promoted (promote is off)"
    assert promotion_outcome({}, {"approved": True, "outcome": "approved", "by": "ann"}) == "promoted, approved by ann"
    assert promotion_outcome({}, {"outcome": "rejected", "by": "admin"}) == "not promoted, rejected by admin"
    assert promotion_outcome(None, None) == "-"


def test_a_reject_is_a_decision_and_no_answer_is_a_shortfall():
    """The roll-up: after Reject the run is not held back (FINISHED, "not promoted, rejected by admin"); after the
    timeout it is (PARTIAL); without an approval the gate's verdict decides, as before."""
    from ragtrail.trail.rollup import FINISHED, PARTIAL, Unit, rollup_status
    from ragtrail_airflow.rag.verdict import held_back

    units = [Unit("index", -1, "FINISHED"), Unit("evaluate", -1, "FINISHED"), Unit("approve", -1, "SKIPPED")]
    gated = {"evaluate": {"gate": "rejected", "reason": "below min_ndcg", "awaiting_approval": True}}
    rejected = {**gated, "approve": {"approved": False, "outcome": "rejected", "by": "admin"}}
    timed_out = {**gated, "approve": {"approved": False, "outcome": "timed_out", "by": "timeout"}}
    assert rollup_status(units, held_back=held_back(rejected)).status == FINISHED
    roll = rollup_status(units, held_back=held_back(timed_out))
    assert roll.status == PARTIAL and roll.reasons == ["evaluate: not promoted (timed_out by timeout)"]
    assert held_back({"evaluate": {"gate": "rejected", "reason": "below min_ndcg"}}) == "below min_ndcg"
    assert held_back({"evaluate": {"gate": "passed", "reason": "ok"}}) is None
