"""The tracking provider's settings: every ``RAGTRAIL_*`` variable the provider reads, declared once.

Read them only through these :class:`~ragtrail.core.envvar.Var` objects (``PROGRESS_S.get()``); the RAG
kit's variables are in :mod:`ragtrail.core.env_kit`. docs/configuration.md is generated from both
(``make docs``), and tests/include/core/test_env.py fails on a ``RAGTRAIL_*`` read that is not declared.
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.envvar import Var

HOME = Var("RAGTRAIL_HOME", Path, None, "the data folder: Airflow home, MLflow store, Qdrant local store, work folders",
           default_doc="`<repo>/.data` (`~/.ragtrail` when installed from the wheel)", example="~/.ragtrail")
EXPERIMENT_PREFIX = Var("RAGTRAIL_EXPERIMENT_PREFIX", str, "ragtrail", "the first part of experiment names",
                        note="experiment names are `<prefix> - <product> (<first 8 chars of its id>)`")
MLFLOW_ARTIFACT_ROOT = Var(
    "RAGTRAIL_MLFLOW_ARTIFACT_ROOT", str, None, "artifact location of new experiments",
    default_doc="`$RAGTRAIL_HOME/mlflow/artifacts` (`mlflow-artifacts:/ragtrail` with an `http(s)://` tracking URI)")
MLFLOW_UI_URL = Var("RAGTRAIL_MLFLOW_UI_URL", str, "http://127.0.0.1:5000",
                    "base URL of the MLflow UI that the task's \"MLflow run\" link opens", option="mlflow_ui_url")
QDRANT_PATH = Var("RAGTRAIL_QDRANT_PATH", Path, None, "the embedded Qdrant store's folder (Edge, or local mode)",
                  default_doc="`$RAGTRAIL_HOME/qdrant`", example="/data/qdrant")
WORK_DIR = Var("RAGTRAIL_WORK_DIR", Path, None, "the local work folder where tasks hand each other files",
               default_doc="`$RAGTRAIL_HOME/work`", example="/data/work")
WORK_URL = Var("RAGTRAIL_WORK_URL", str, None, "the work store where tasks hand each other files",
               default_doc="– (the local work folder)", example="s3://bucket/prefix",
               note="`s3://bucket/prefix` (or another fsspec URL) for workers without a shared disk "
                    "([compose.md](compose.md))")
WORK_ENDPOINT_URL = Var("RAGTRAIL_WORK_ENDPOINT_URL", str, None,
                        "S3 endpoint of the work store outside Airflow (e.g. a MinIO URL)", default_doc="– (AWS)",
                        example="http://minio:9000")
PRODUCTS_FILE = Var("RAGTRAIL_PRODUCTS_FILE", Path, None, "the products file (one scheduled DAG per product)",
                    default_doc="`include/products.yml`", example="~/products.yml")
PROGRESS_S = Var("RAGTRAIL_PROGRESS_S", float, 15.0, "seconds between progress lines", low=0, example="15",
                 note="a long stage's lines keep coming while one file takes long, and name it")
LOCK_TIMEOUT_S = Var("RAGTRAIL_LOCK_TIMEOUT_S", float, 900.0, "seconds a process waits for the Qdrant local store",
                     low=0, example="900")
FAILPOINTS = Var("RAGTRAIL_FAILPOINTS", str, None, "tests only: comma-separated points where a task kills itself",
                 example="index.start")

TRACKING = Var("RAGTRAIL_TRACKING", bool, True, "log to MLflow at all", option="tracking_enabled", example="off",
               note="`off` runs the pipeline the same and logs nothing")
TRACKING_MODE = Var("RAGTRAIL_TRACKING_MODE", str, "lenient", "what a task does when MLflow is down",
                    choices=("lenient", "strict"), option="tracking_mode",
                    note="`lenient` goes on untracked, `strict` fails the task")
MLFLOW_TIMEOUT_S = Var("RAGTRAIL_MLFLOW_TIMEOUT_S", float, 10.0, "seconds one MLflow request may take", low=1,
                       option="mlflow_timeout_s", example="10",
                       note="whole seconds: set as `MLFLOW_HTTP_REQUEST_TIMEOUT` unless that is set")
MLFLOW_HTTP_TIMEOUT_SET = Var("RAGTRAIL_MLFLOW_HTTP_TIMEOUT_SET", int, None,
                              "internal, never set it yourself: the `MLFLOW_HTTP_REQUEST_TIMEOUT` ragtrail set in "
                              "this process or a parent", low=1, default_doc="–",
                              note="a later, shorter MLflow budget may lower only a timeout ragtrail set")
MLFLOW_RETRIES = Var("RAGTRAIL_MLFLOW_RETRIES", int, 4, "retries of a failed MLflow request", low=0,
                     option="mlflow_retries")
MLFLOW_BACKOFF_S = Var("RAGTRAIL_MLFLOW_BACKOFF_S", float, 0.5, "first pause between MLflow retries (doubles)",
                       low=0, option="mlflow_backoff_s")
MLFLOW_BUDGET_S = Var("RAGTRAIL_MLFLOW_BUDGET_S", float, 30.0, "seconds all MLflow calls of one task may take",
                      low=0, option="mlflow_budget_s", example="30")
TRACE_SAMPLE_RATE = Var("RAGTRAIL_TRACE_SAMPLE_RATE", float, 1.0,
                        "share of `@track` calls and searches recorded as MLflow traces", low=0, high=1,
                        option="trace_sample_rate")
PARENT_SETTLE_S = Var("RAGTRAIL_PARENT_SETTLE_S", float, 0.3,
                      "seconds a new DAG-run parent run waits for a concurrent twin", low=0)
DAG_TAGS = Var("RAGTRAIL_DAG_TAGS", str, "mlflow", "comma-separated DAG tags that the listener trails",
               option="dag_tags", note="see [tracking-any-dag.md](tracking-any-dag.md)")
TRACK_ALL_DAGS = Var("RAGTRAIL_TRACK_ALL_DAGS", bool, False, "trail every DAG, tagged or not",
                     option="track_all_dags")
PRELOAD_MLFLOW = Var("RAGTRAIL_PRELOAD_MLFLOW", bool, True,
                     "import MLflow in a LocalExecutor scheduler or a Celery worker (ragtrail_airflow.celery_config) "
                     "before it forks task processes", example="off")

ALL = (HOME, EXPERIMENT_PREFIX, MLFLOW_ARTIFACT_ROOT, MLFLOW_UI_URL, QDRANT_PATH, WORK_DIR, WORK_URL,
       WORK_ENDPOINT_URL, PRODUCTS_FILE, PROGRESS_S, LOCK_TIMEOUT_S, FAILPOINTS, TRACKING, TRACKING_MODE,
       MLFLOW_TIMEOUT_S, MLFLOW_HTTP_TIMEOUT_SET, MLFLOW_RETRIES, MLFLOW_BACKOFF_S, MLFLOW_BUDGET_S, TRACE_SAMPLE_RATE, PARENT_SETTLE_S,
       DAG_TAGS, TRACK_ALL_DAGS, PRELOAD_MLFLOW)
