"""The Airflow plugin: the listener, the "MLflow run" extra links, the ``/ragtrail`` REST API and the metrics page.

The page appears in the Airflow UI's *Browse* menu ("RAG metrics"), embedded at ``/plugin/ragtrail``.
"""

from __future__ import annotations

from functools import cached_property

from airflow.plugins_manager import AirflowPlugin

from ragtrail_airflow import listener, preload
from ragtrail_airflow.links import (
    GlobalMLflowPipelineRunLink,
    GlobalMLflowRunLink,
    MLflowPipelineRunLink,
    MLflowRunLink,
)

URL_PREFIX = "/ragtrail"


class RagtrailPlugin(AirflowPlugin):
    """Registered through the ``airflow.plugins`` entry point (see pyproject.toml)."""

    name = "ragtrail"
    operator_extra_links = [MLflowRunLink(), MLflowPipelineRunLink()]
    # On every task of every DAG: the listener's tasks (an operator's own links of the same name win).
    global_operator_extra_links = [GlobalMLflowRunLink(), GlobalMLflowPipelineRunLink()]
    # preload: MLflow imported before the LocalExecutor forks task processes; listener: any opted-in DAG.
    listeners = [preload, listener]
    external_views = [{
        "name": "RAG metrics",
        "href": f"{URL_PREFIX}/metrics",
        "url_route": "ragtrail",
        "destination": "nav",
        "category": "browse",
    }, {  # a tab on every DAG run: its MLflow pipeline run (status, quality, task runs, links)
        "name": "MLflow",
        "href": f"{URL_PREFIX}/dag_runs/{{DAG_ID}}/{{RUN_ID}}",
        "url_route": "mlflow",
        "destination": "dag_run",
    }]

    @cached_property
    def fastapi_apps(self) -> list[dict]:  # type: ignore[override]
        """Built on first use: only the API server asks, so schedulers and workers never import it."""
        from ragtrail_airflow.api import create_app
        from ragtrail_airflow.config import kit_installed

        apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ragtrail"}]
        if not kit_installed():  # the provider alone: no registry webhook (it feeds the kit's registry sync)
            return apps
        from ragtrail_airflow.rag.webhooks import create_hooks_app  # noqa: TID251 - only with the kit installed

        # The webhook receiver first: it is matched before the /ragtrail app, and has no Airflow login
        # (MLflow signs each delivery instead; see ragtrail_airflow.rag.webhooks).
        return [{"app": create_hooks_app(), "url_prefix": f"{URL_PREFIX}/hooks", "name": "ragtrail-hooks"}, *apps]
