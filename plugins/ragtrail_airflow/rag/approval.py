"""Human approval of a promotion: the ``approve`` task of every ingest DAG, on Airflow's ApprovalOperator.

When the run's ``approval`` param asks for it — ``always``, or ``held`` and the evaluation gate held
the build back — the evaluate task leaves the alias where it is and this task waits (Airflow 3.3's
``awaiting_input`` state; *Required actions* in the UI, or ``PATCH …/hitlDetails`` of the REST API)
showing new vs live nDCG@10 / recall@10, the questions that got better and worse, and both MLflow
runs. Otherwise it skips itself.

- **Approve** → the ``<product>`` alias moves to the build and ``@production`` of ``ragtrail-<product>``
  with it (old versions pruned, their registered versions tagged archived); an index asset event is
  emitted.
- **Reject** → nothing moves: the build stays ``@candidate``.
- **No answer within ``approval_timeout_h``** → Airflow applies the default, *Reject*; recorded as
  decided by ``timeout``.

Who decided and when is tagged (``ragtrail.approval``, ``…_by``, ``…_at``) on the evaluate task's MLflow
run and on the model version. Downstream tasks run either way (the roll-up must close the run).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

from ragtrail_airflow.rag.verdict import promotion_outcome

if TYPE_CHECKING:
    from airflow.sdk import Context


def needs_approval(mode: str, decision: dict | None) -> bool:
    """Whether a build waits for a person: ``always``, or ``held`` and the gate rejected it."""
    if not decision or mode == "off":
        return False
    return mode == "always" or decision.get("gate") == "rejected"


# What the gate said, in words a reviewer reads (``ragtrail.gate``'s verdicts).
_VERDICT = {"passed": "The gate passed it", "rejected": "The gate held it back",
            "skipped": "The gate measured nothing"}


def prompt_text(decision: dict | None, mode: str, promote: bool) -> tuple[bool, str]:
    """Whether a person is asked, and what they read: the gate's verdict and what approving will do.

    Right for every combination of ``promote``, the gate's verdict and the approval mode: a build is offered
    only when promotion was asked for and the mode wants a person (:func:`needs_approval`).
    """
    decision = decision or {}
    gate, reason = decision.get("gate"), decision.get("reason") or ""
    collection, live = decision.get("collection") or "the build", decision.get("live")
    if not promote or gate == "not_requested":
        return False, f"Promote is off for this run: {collection} stays dark, nobody is asked."
    if not needs_approval(mode, decision):
        went = "stays dark" if gate == "rejected" else "went live"
        why = "approval is off" if mode == "off" else f"approval {mode} asks only about builds the gate held back"
        return False, f"No approval needed ({why}): {_VERDICT.get(gate, gate)} and {collection} {went}."
    said = f"{_VERDICT.get(gate, f'The gate said {gate}')} — {reason}"
    if live == collection:
        return True, (f"{said}\n\n{collection} is already live (this run re-indexed it in place): approving "
                      "records the approval and moves nothing; rejecting leaves it live too.")
    override = ", overriding the gate" if gate == "rejected" else ""
    now = f"replacing {live}" if live else "the first live version"
    return True, (f"{said}\n\n**Approve** makes {collection} live ({now}{override}) and moves @production to it. "
                  f"**Reject** (or no answer before the timeout) keeps {live or 'nothing'} live; {collection} stays "
                  "@candidate.")


def _fmt(metrics: dict | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def approval_body(decision: dict, new_url: str | None, live_url: str | None, mode: str = "always") -> str:
    """The Markdown a reviewer reads: the gate's verdict and what approving does, metrics side by side, what
    changed per question, both runs."""
    new, live = decision.get("metrics") or {}, decision.get("live_metrics") or {}
    lines = [prompt_text(decision, mode, True)[1], "",
             "| | new | live |", "| --- | --- | --- |",
             f"| nDCG@10 | {_fmt(new, 'ndcg_at_10')} | {_fmt(live, 'ndcg_at_10')} |",
             f"| recall@10 | {_fmt(new, 'recall_at_10')} | {_fmt(live, 'recall_at_10')} |", ""]
    changes = decision.get("vs_live") or {}
    for label, key in (("Better", "better"), ("Worse", "worse")):
        items = changes.get(key) or []
        lines.append(f"{label} ({len(items)}): " + (", ".join(f"{q['query_id']} {q['delta']:+.2f}" for q in items[:10])
                                                    or "none"))
    lines += ["", f"MLflow: [new build]({new_url})" if new_url else "MLflow: new build not tracked",
              f"· [live build]({live_url})" if live_url else "· no tracked live build"]
    return "\n".join(lines)


class PromotionApproval(ApprovalOperator):
    """Wait for a person to approve the build the ``evaluate`` task measured (see the module docstring)."""

    def __init__(self, *, evaluate_task_id: str = "evaluate", **kwargs: Any) -> None:
        kwargs.setdefault("subject", "Promote this build?")
        super().__init__(defaults=[ApprovalOperator.REJECT], **kwargs)
        self.evaluate_task_id = evaluate_task_id

    def execute(self, context: Context):
        from airflow.sdk.exceptions import AirflowSkipException

        from ragtrail.core.spec import run_config

        cfg = run_config(context["params"])
        decision = context["ti"].xcom_pull(task_ids=self.evaluate_task_id)
        if not (decision or {}).get("awaiting_approval"):  # evaluate decided (needs_approval, promote on)
            raise AirflowSkipException(prompt_text(decision, cfg.approval, cfg.promote)[1])
        self.subject = f"{cfg.product}: make {decision['collection']} live?"
        self.body = approval_body(decision, *_run_urls(cfg.product, decision), mode=cfg.approval)
        self.response_timeout = timedelta(hours=cfg.approval_timeout_h)
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        answer = HITLOperator.execute_complete(self, context, event)  # recorded, downstream not skipped
        from ragtrail.core.spec import run_config

        approved = answer["chosen_options"] == [self.APPROVE]
        user = answer.get("responded_by_user") or {}
        by = "timeout" if event.get("timedout") or not user else str(user.get("name") or user.get("id"))
        at = answer["responded_at"]
        decision = context["ti"].xcom_pull(task_ids=self.evaluate_task_id)
        result = apply_decision(run_config(context["params"]), decision, approved=approved, by=by,
                                at=at.isoformat() if hasattr(at, "isoformat") else str(at),
                                outlet_events=context.get("outlet_events"))
        if approved:
            return result
        # Nothing was published: the task ends skipped, saying why; the roll-up reads the decision from XCom.
        from airflow.sdk.exceptions import AirflowSkipException

        context["ti"].xcom_push(key="return_value", value=result)
        raise AirflowSkipException(promotion_outcome(decision, result))


def _run_urls(product: str, decision: dict) -> tuple[str | None, str | None]:
    """MLflow UI links of the new build's evaluate run and of the live (``@production``) build's run."""
    from ragtrail_airflow.config import tracking_enabled

    if not tracking_enabled() or not decision.get("mlflow_run_id"):
        return None, None
    from ragtrail.trail.client import guarded_client
    from ragtrail.trail.registry import production_record
    from ragtrail_airflow.config import policy, run_url

    client = guarded_client(policy())
    new = client.get_run(decision["mlflow_run_id"]).info
    live = production_record(product, client)
    live_url = None
    if live and live.get("run_id"):
        info = client.get_run(live["run_id"]).info
        live_url = run_url(info.experiment_id, info.run_id)
    return run_url(new.experiment_id, new.run_id), live_url


def apply_decision(cfg, decision: dict, *, approved: bool, by: str, at: str, outlet_events=None) -> dict:
    """Carry out a reviewer's answer on the store and the registry; tag who and when."""
    from ragtrail_airflow.config import tracking_enabled
    from ragtrail_airflow.rag.assets import publish_index
    from ragtrail_airflow.rag.store_conn import store_settings

    outcome = "approved" if approved else ("timed_out" if by == "timeout" else "rejected")
    result: dict[str, Any] = {"approved": approved, "outcome": outcome, "by": by, "at": at,
                              "collection": decision["collection"], "promoted": False, "live": decision.get("live")}
    client = None
    if tracking_enabled():
        from ragtrail.trail.client import guarded_client
        from ragtrail.trail.registry import record_decision
        from ragtrail_airflow.config import policy

        client = guarded_client(policy())
        record_decision(client, cfg.product, decision.get("model_version"), decision.get("mlflow_run_id"),
                        outcome=outcome, by=by, at=at)
    if not approved:
        return result
    from ragtrail.models.agreement import go_live

    moved = go_live(cfg.product, decision["collection"], client, store_settings(), keep_versions=cfg.keep_versions)
    result.update(promoted=True, **moved)
    publish_index(outlet_events, cfg.product, collection=moved["live"], version=cfg.version,
                  metrics=decision.get("metrics"), model_version=moved.get("model_version"), cause=f"approved by {by}")
    return result
