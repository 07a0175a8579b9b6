"""The Airflow side of ragtrail: the listener, the tracked-task operator, its MLflow extra links and the plugin.

This package is registered with Airflow through entry points (see ``pyproject.toml``): as a provider
it contributes the ``@task.tracked`` and ``@task.rollup`` decorators, so DAG files import nothing but
``airflow.sdk``, and the ``[ragtrail]`` config section; as a plugin it contributes the listener that
trails every task of an opted-in DAG (tag ``mlflow``) and closes its DAG runs, the "MLflow run" links on
every task, the ``/ragtrail`` REST API and the metrics page.
It holds only Airflow glue: MLflow is spoken by the trail (:mod:`ragtrail.trail`), which also
offers :func:`ragtrail.trail.track.track` for tracking any function the same way. The modules here are the
tracking provider and never import the RAG kit; the kit's Airflow glue (the pipeline's tasks, roll-up,
approval, canary, tuning, registry sync, connections) is :mod:`ragtrail_airflow.rag`, which needs
``pip install "ragtrail[rag]"``.
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "ragtrail",
        "name": "ragtrail",
        "description": "MLflow tracking for any Airflow DAG (a listener, links, a DAG-run closer) and, with "
                       "the rag extra, document ingestion into Qdrant with every task tracked in MLflow.",
        "versions": [__version__],
        "task-decorators": [{"name": "tracked", "class-name": "ragtrail_airflow.operator.tracked_task"},
                            {"name": "rollup", "class-name": "ragtrail_airflow.operator.rollup_task"}],
        "extra-links": ["ragtrail_airflow.links.MLflowRunLink", "ragtrail_airflow.links.MLflowPipelineRunLink",
                        "ragtrail_airflow.links.GlobalMLflowRunLink",
                        "ragtrail_airflow.links.GlobalMLflowPipelineRunLink"],
        # The plugin carries the listener (ragtrail_airflow.listener), the global links and the API.
        "plugins": [{"name": "ragtrail", "plugin-class": "ragtrail_airflow.plugin.RagtrailPlugin"}],
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
                    "tracking_mode": {
                        "description": "When MLflow is unavailable: 'lenient' runs the task untracked and "
                                       "marks the trail incomplete; 'strict' fails the task. Env "
                                       "RAGTRAIL_TRACKING_MODE wins.",
                        "version_added": "0.1.0", "type": "string", "example": "strict", "default": "lenient",
                    },
                    "mlflow_timeout_s": {
                        "description": "Longest wait for one MLflow request. Env RAGTRAIL_MLFLOW_TIMEOUT_S wins.",
                        "version_added": "0.1.0", "type": "float", "example": None, "default": "10",
                    },
                    "mlflow_retries": {
                        "description": "Retries of a failed MLflow request. Env RAGTRAIL_MLFLOW_RETRIES wins.",
                        "version_added": "0.1.0", "type": "integer", "example": None, "default": "4",
                    },
                    "mlflow_backoff_s": {
                        "description": "First pause between retries (doubles). Env RAGTRAIL_MLFLOW_BACKOFF_S wins.",
                        "version_added": "0.1.0", "type": "float", "example": None, "default": "0.5",
                    },
                    "dag_tags": {
                        "description": "DAG tags that opt a DAG into the listener's tracking (comma-separated). "
                                       "Env RAGTRAIL_DAG_TAGS wins.",
                        "version_added": "0.1.0", "type": "string", "example": "mlflow,ml", "default": "mlflow",
                    },
                    "track_all_dags": {
                        "description": "Track every DAG, tagged or not. Env RAGTRAIL_TRACK_ALL_DAGS wins.",
                        "version_added": "0.1.0", "type": "boolean", "example": "True", "default": "False",
                    },
                    "trace_sample_rate": {
                        "description": "Share of @track calls and searches recorded as MLflow traces (0 to 1). "
                                       "Env RAGTRAIL_TRACE_SAMPLE_RATE wins.",
                        "version_added": "0.1.0", "type": "float", "example": "0.1", "default": "1.0",
                    },
                    "mlflow_budget_s": {
                        "description": "All MLflow calls of one task together, waits included. Env "
                                       "RAGTRAIL_MLFLOW_BUDGET_S wins.",
                        "version_added": "0.1.0", "type": "float", "example": None, "default": "30",
                    },
                },
            }
        },
    }
