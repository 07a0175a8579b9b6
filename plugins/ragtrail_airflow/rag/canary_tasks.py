"""The canary DAG's task: score the live alias of a product and fail, saying why, when quality dropped.

The baseline is the nDCG@10 the registry's ``@production`` version scored when it was evaluated (the
last promoted build); without a registry (tracking off) the canary only checks that the alias answers.
The check itself is :func:`ragtrail.stages.canary.check_live`; its metrics and verdict go to an MLflow run of
its own (``ragtrail.role=canary``) in the product's experiment, so the live quality has a trend.
"""

from __future__ import annotations

from airflow.sdk import task


def build_canary(product: str, *, source: str, eval_queries: str | None, tolerance: float) -> None:
    """Create the ``canary`` task of ``product`` in the DAG being defined."""

    @task(task_id="canary", retries=0, multiple_outputs=True)  # as inferred from `-> dict`
    def canary(dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ragtrail.core.recorder import Recorder
        from ragtrail.stages.canary import check_live
        from ragtrail.stages.evaluation import resolve_query_file
        from ragtrail_airflow.config import policy, tracking_enabled
        from ragtrail_airflow.rag.store_conn import store_settings

        client = baseline = None
        if tracking_enabled():
            from ragtrail.trail.client import guarded_client
            from ragtrail.trail.registry import production_record

            client = guarded_client(policy())
            baseline = production_record(product, client)
        rec = Recorder()
        verdict = check_live(location=store_settings(), product=product,
                             queries_path=resolve_query_file(source, eval_queries or ""), baseline=baseline,
                             tolerance=tolerance, recorder=rec)
        if client is not None:
            from ragtrail.trail.canary_runs import log_canary_run

            verdict["mlflow_run_id"] = log_canary_run(client, product, rec, verdict["ok"],
                                                      dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        print(f"canary {product}: {'ok' if verdict['ok'] else 'FAILED'}: {verdict['reason']}")
        if not verdict["ok"]:
            raise AirflowFailException(f"canary {product}: {verdict['reason']}")
        return verdict

    canary()
