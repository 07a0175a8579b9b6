"""The Airflow side of ragtrail: the tracked-task operator, its MLflow extra link and the plugin.

This package is registered with Airflow through entry points (see ``pyproject.toml``): as a provider
it contributes the ``@task.tracked`` decorator, so DAG files import nothing but ``airflow.sdk``; as a
plugin it contributes the "MLflow run" extra link and a FastAPI app. It is also the only place that
speaks MLflow.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "ragtrail",
        "name": "ragtrail",
        "description": "Document ingestion into Qdrant with every task tracked in MLflow.",
        "versions": [__version__],
        "task-decorators": [{"name": "tracked", "class-name": "ragtrail_airflow.operator.tracked_task"}],
        "extra-links": ["ragtrail_airflow.links.MLflowRunLink"],
        "config": {
            "ragtrail": {
                "description": "ragtrail tracking settings.",
                "options": {
                    "tracking_enabled": {
                        "description": "Log every tracked task to MLflow. Env RAGTRAIL_TRACKING wins.",
                        "version_added": "0.1.0", "type": "boolean", "example": "False", "default": "True",
                    },
                    "mlflow_ui_url": {
                        "description": "Base URL of the MLflow UI the extra link opens.",
                        "version_added": "0.1.0", "type": "string", "example": None,
                        "default": "http://127.0.0.1:5000",
                    },
                },
            }
        },
    }
