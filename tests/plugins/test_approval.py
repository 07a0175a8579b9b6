"""The approve task: who waits, what the reviewer reads, and how an answer — or no answer — is recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from ragtrail_airflow.approval import PromotionApproval, approval_body, needs_approval

DECISION = {"collection": "p__v2", "live": "p__v1", "gate": "rejected", "reason": "nDCG@10 0.5 is worse …",
            "metrics": {"ndcg_at_10": 0.5, "recall_at_10": 0.7}, "live_metrics": {"ndcg_at_10": 0.9, "recall_at_10": 1.0},
            "vs_live": {"better": [{"query_id": "q3", "delta": 0.2}], "worse": [{"query_id": "q1", "delta": -1.0}]},
            "awaiting_approval": True}


def test_who_waits_for_a_person():
    assert needs_approval("always", {"gate": "passed"}) and needs_approval("held", {"gate": "rejected"})
    assert not needs_approval("held", {"gate": "passed"}) and not needs_approval("off", {"gate": "rejected"})


def test_the_reviewer_sees_both_versions_the_moved_questions_and_both_runs():
    body = approval_body(DECISION, "http://mlflow/new", "http://mlflow/live")
    assert "| nDCG@10 | 0.500 | 0.900 |" in body and "| recall@10 | 0.700 | 1.000 |" in body
    assert "Better (1): q3 +0.20" in body and "Worse (1): q1 -1.00" in body
    assert "(http://mlflow/new)" in body and "(http://mlflow/live)" in body


class _TI:
    def xcom_pull(self, task_ids):
        return DECISION


def test_no_answer_before_the_timeout_is_a_recorded_rejection(monkeypatch):
    """Airflow's timeout sweep resumes the task with the default (Reject) and no user: nothing moves, and it is
    recorded as timed out by "timeout" (the sweep itself needs a scheduler and a real wait)."""
    monkeypatch.setenv("RAGTRAIL_TRACKING", "off")
    op = PromotionApproval(task_id="approve")
    assert op.defaults == ["Reject"]
    event = {"chosen_options": ["Reject"], "params_input": {}, "responded_at": datetime(2026, 11, 28, tzinfo=UTC),
             "responded_by_user": None, "timedout": True}
    result = op.execute_complete({"ti": _TI(), "params": {"source": "s", "product": "p", "version": "v2"}}, event)
    assert result["outcome"] == "timed_out" and result["by"] == "timeout"
    assert result["promoted"] is False and result["live"] == "p__v1"
