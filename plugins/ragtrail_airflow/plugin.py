"""The Airflow plugin: the "MLflow run" extra link and a small FastAPI app in the API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from ragtrail_airflow.links import MLflowRunLink


def _create_app():
    from fastapi import FastAPI

    app = FastAPI(title="ragtrail", description="ragtrail's view of its MLflow trail and Qdrant index.")

    @app.get("/health")
    def health() -> dict:
        """Whether MLflow's store and Qdrant are reachable from the API server."""
        from ragtrail.settings import load

        settings = load()
        out = {"mlflow": {"uri": settings.mlflow_tracking_uri}, "qdrant": {}}
        try:
            from ragtrail_airflow.tracking import get_client

            get_client().search_experiments(max_results=1)
            out["mlflow"]["ok"] = True
        except Exception as err:  # reported, not raised: this is a health check
            out["mlflow"].update(ok=False, error=type(err).__name__)
        out["qdrant"]["location"] = settings.qdrant_url or str(settings.qdrant_path)
        return out

    return app


class RagtrailPlugin(AirflowPlugin):
    """Registered through the ``airflow.plugins`` entry point (see pyproject.toml)."""

    name = "ragtrail"
    operator_extra_links = [MLflowRunLink()]
    fastapi_apps = [{"app": _create_app(), "url_prefix": "/ragtrail", "name": "ragtrail"}]
