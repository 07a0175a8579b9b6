"""### rag_registry_sync — the Qdrant alias follows the MLflow registry's @production

**reconcile** compares `@production` of every `ragtrail-<product>` model with the `<product>` alias in
Qdrant and moves the alias to the registry's collection when they differ (an index asset event for
each move; drift it cannot repair fails the task). It runs on the `ragtrail_registry` asset — fed by
MLflow's registry webhook through the plugin's `/ragtrail/hooks/mlflow` route, so a move in the MLflow
UI reaches Qdrant within seconds — and every hour, which catches drift wherever webhooks are not
available. `ragtrail reconcile` does the same from the shell.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag

from ragtrail_airflow.rag.assets import REGISTRY_ASSET
from ragtrail_airflow.rag.registry_sync import build_registry_sync


@dag(
    dag_id="rag_registry_sync",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("17 * * * *", timezone="UTC"), assets=[REGISTRY_ASSET]),
    catchup=False,
    max_active_runs=1,
    description="Keep each product's Qdrant alias on the MLflow registry's @production (webhook events and hourly).",
    doc_md=__doc__,
    tags=["ragtrail", "registry"],
    default_args={"retries": 1},
)
def rag_registry_sync():
    build_registry_sync()


rag_registry_sync()
