"""The RAG kit's settings: every ``RAGTRAIL_*`` variable that sources, stages, the store, the shell and the
pipeline DAGs' glue read, declared once (the tracking provider's own are in :mod:`ragtrail.core.env`).

Read them only through these :class:`~ragtrail.core.envvar.Var` objects (``UPLOAD_BATCH.get()``).
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.core.envvar import Var

QDRANT_URL = Var("RAGTRAIL_QDRANT_URL", str, None, "a Qdrant server instead of the local store",
                 default_doc="–", example="https://qdrant.example:6333",
                 note="a `qdrant_default` Airflow connection wins in DAG runs")
QDRANT_API_KEY = Var("RAGTRAIL_QDRANT_API_KEY", str, None, "that Qdrant server's API key", secret=True,
                     note="a URL with credentials is refused; see [architecture.md](architecture.md#add-a-store)")
QDRANT_CA_BUNDLE = Var("RAGTRAIL_QDRANT_CA_BUNDLE", str, None, "CA bundle of that server, for a private CA",
                       default_doc="–", example="/etc/ssl/private-ca.pem")
EMBEDDED_STORE = Var("RAGTRAIL_EMBEDDED_STORE", str, "edge", "which engine serves the local store folder",
                     choices=("edge", "qdrant"),
                     note="`edge`: Qdrant Edge, the real engine in-process; `qdrant`: qdrant-client's local mode")
EDGE_INDEXING_THRESHOLD_KB = Var("RAGTRAIL_EDGE_INDEXING_THRESHOLD_KB", int, 20000,
                                 "Edge: vectors (KB) a segment holds before `optimize` builds HNSW", low=0,
                                 note="below it, search is exact")
EDGE_PART_POINTS = Var("RAGTRAIL_EDGE_PART_POINTS", int, 20000,
                       "Edge: points per part (one shard per range of documents) a new version is cut into",
                       low=0, note="0: one shard; the index task holds one part at a time (docs/scaling.md)")
INDEX_WAIT_S = Var("RAGTRAIL_INDEX_WAIT_S", float, 1800.0, "seconds the index stage waits for a Qdrant server "
                   "to finish a new version's HNSW index (collection green)", low=0)
UPLOAD_BATCH = Var("RAGTRAIL_UPLOAD_BATCH", int, 256, "points per upsert call to the store", low=1)
UPLOAD_RETRIES = Var("RAGTRAIL_UPLOAD_RETRIES", int, 4, "retries of an upsert batch on a server (qdrant-client's `upload_points` retries at once)",
                     low=0)
UPLOAD_PARALLEL = Var("RAGTRAIL_UPLOAD_PARALLEL", int, 1, "worker processes qdrant-client's `upload_points` "
                      "sends a server's batches from", low=1,
                      note="used when an upsert holds at least two batches per worker; a pool starts per call")
UPSERT_BATCH = Var("RAGTRAIL_UPSERT_BATCH", int, 1024, "chunks the index stage reads and upserts at a time", low=1,
                   note="the store splits them into `RAGTRAIL_UPLOAD_BATCH` batches; measured in docs/performance.md")
CPU_POOL = Var("RAGTRAIL_CPU_POOL", str, None, "Airflow pool that chunk and embed tasks take", default_doc="– (none)",
               example="ragtrail_cpu", note="compose sets `ragtrail_cpu`")
STORE_QUEUE = Var("RAGTRAIL_STORE_QUEUE", str, None, "Celery queue of the tasks that open a local-mode Qdrant store",
                  default_doc="–", example="store",
                  note="split (it reads the collection's stamp for the source state), plan, write, index and evaluate; "
                       "one worker serves it; ignored with a Qdrant server")
WRITE_GROUP_POINTS = Var("RAGTRAIL_WRITE_GROUP_POINTS", int, 20000, "points a write group holds at most (plus "
                         "one chunk batch): the run's chunk batches are cut into groups of about this size, one "
                         "mapped write task each", low=0,
                         note="decided at run time by dedupe, and cut at the embedded store's parts too; never more "
                              "groups than chunk batches (so under `max_map_length`); 0: no cap (docs/scaling.md)")
WRITE_TASKS = Var("RAGTRAIL_WRITE_TASKS", int, None, "write groups a DAG run is cut into at least (when it has as "
                  "many chunk batches)", low=1, high=1024, default_doc="1 (embedded store), else 4",
                  note="read by dedupe at run time; more groups when `RAGTRAIL_WRITE_GROUP_POINTS` or the parts ask")
WRITE_CONCURRENCY = Var("RAGTRAIL_WRITE_CONCURRENCY", int, None, "write tasks of one DAG run that run at once "
                        "(their `max_active_tis_per_dagrun`)", low=1, default_doc="2 (embedded store), else 4",
                        note="on the embedded store writers of different parts run side by side and those of one "
                             "part take turns on its lock; a Qdrant server takes parallel writes")
WRITE_POOL = Var("RAGTRAIL_WRITE_POOL", str, None, "Airflow pool that write tasks take", default_doc="– (none)",
                 example="ragtrail_write", note="throttles writes across DAG runs (a scheduler never runs a task "
                                                "whose pool does not exist)")
TASK_RETRIES = Var("RAGTRAIL_TASK_RETRIES", int, 1, "retries of each pipeline task", low=0)
RETRY_DELAY_S = Var("RAGTRAIL_RETRY_DELAY_S", float, 15.0, "seconds between a pipeline task's retries", low=0,
                    example="15")
WORK_CONN_ID = Var("RAGTRAIL_WORK_CONN_ID", str, "aws_default", "the Airflow connection an `s3://` work store is "
                   "reached with", note="credentials, region, `endpoint_url`")
KEEP_WORK = Var("RAGTRAIL_KEEP_WORK", bool, False, "keep a FINISHED run's work files", example="on",
                note="they are removed by default; PARTIAL/FAILED runs always keep them")
PARSE_TIMEOUT_S = Var("RAGTRAIL_PARSE_TIMEOUT_S", float, 120.0, "seconds a file's parser process may take", low=0,
                      aliases=("RAGTRAIL_PDF_TIMEOUT_S",), example="120",
                      note="any format: the parser is killed after it and the file quarantined `parse_timeout`")
PARSE_MAX_MEMORY_MB = Var("RAGTRAIL_PARSE_MAX_MEMORY_MB", int, 2048, "memory budget (MB) of the parser process",
                          low=1, aliases=("RAGTRAIL_PDF_MAX_MEMORY_MB",),
                          note="`RLIMIT_AS`; a file over it is quarantined `parse_memory_limit`")
PARSE_WORKERS = Var("RAGTRAIL_PARSE_WORKERS", int, None, "sandboxed parser processes an ingest task parses with",
                    low=1, default_doc="usable CPUs", example="4",
                    note="each with its own time and memory budget (so up to this many times "
                         "`RAGTRAIL_PARSE_MAX_MEMORY_MB`); files are still recorded in listing order; lower it where "
                         "a worker runs several ingest shards at once; see [performance.md](performance.md#parsing-issue-30)")
OFFICE_MAX_UNCOMPRESSED_MB = Var("RAGTRAIL_OFFICE_MAX_UNCOMPRESSED_MB", float, 512.0,
                                 "MB an Office file's zip may expand to", low=0, example="512",
                                 note="a file over it is a `zip_bomb` (never opened)")
WATCH_POLL_S = Var("RAGTRAIL_WATCH_POLL_S", float, 60.0, "seconds between polls of an `on_change` product's source",
                   low=0, example="60", note="read when DAGs are parsed; a product with `source_events` long-polls "
                   "its SQS queue instead")
WEBHOOK_SECRET = Var("RAGTRAIL_WEBHOOK_SECRET", str, None, "the HMAC secret of MLflow's registry webhook",
                     secret=True, note="the API server's `/ragtrail/hooks/mlflow` refuses every delivery without it")
UI_AIRFLOW_PORT = Var("RAGTRAIL_UI_AIRFLOW_PORT", int, 8080, "port of `make ui`'s Airflow", low=1, high=65535)
UI_MLFLOW_PORT = Var("RAGTRAIL_UI_MLFLOW_PORT", int, 5000, "port of `make ui`'s MLflow", low=1, high=65535)
MODEL_CACHE = Var("RAGTRAIL_MODEL_CACHE", Path, None, "where the ONNX exports of the embedder are kept",
                  default_doc="`$RAGTRAIL_HOME/models`", example="~/.cache/ragtrail-models",
                  note="share it between data folders")
ONNX_THREADS = Var("RAGTRAIL_ONNX_THREADS", int, None, "ONNX Runtime intra-op threads of the `onnx-*` backends",
                   low=1, default_doc="usable CPUs", example="4",
                   note="usable CPUs: the affinity mask, capped by the cgroup CPU quota (`core/cpus.py`)")
ONNX_BATCH = Var("RAGTRAIL_ONNX_BATCH", int, 16, "most texts per ONNX Runtime call of the `onnx-*` backends", low=1,
                 note="a product's larger `batch_size` is split into calls of this many (length-sorted); 16 measured "
                      "fastest on CPU, see [performance.md](performance.md#embedding-backends-issue-30)")
ONNX_SPIN = Var("RAGTRAIL_ONNX_SPIN", bool, False, "let ONNX Runtime's idle threads spin (busy-wait) between ops",
                example="on", note="off measured faster on shared CPUs; see [performance.md](performance.md)")

RERANKER = Var("RAGTRAIL_RERANKER", Path, None, "a local cross-encoder folder that re-scores the first-stage hits "
               "of every search", default_doc="– (off)", example="/models/ms-marco-MiniLM-L-6-v2",
               note="a sentence-transformers `CrossEncoder` saved with `save_pretrained`; nothing is downloaded; "
                    "a folder that does not load stops the search with one line saying why; "
                    "see [reranking.md](reranking.md)")
RERANK_TOP_N = Var("RAGTRAIL_RERANK_TOP_N", int, 50, "first-stage hits per query that the re-ranker re-scores",
                   low=1, high=1000, note="raised to the search's k when smaller; read only with `RAGTRAIL_RERANKER`")

ALL = (QDRANT_URL, QDRANT_API_KEY, QDRANT_CA_BUNDLE, EMBEDDED_STORE, EDGE_INDEXING_THRESHOLD_KB, EDGE_PART_POINTS, INDEX_WAIT_S, UPLOAD_BATCH, UPLOAD_RETRIES, UPLOAD_PARALLEL, UPSERT_BATCH, CPU_POOL,
       STORE_QUEUE, WRITE_GROUP_POINTS, WRITE_TASKS, WRITE_CONCURRENCY, WRITE_POOL, TASK_RETRIES, RETRY_DELAY_S, WORK_CONN_ID, KEEP_WORK, PARSE_TIMEOUT_S, PARSE_MAX_MEMORY_MB,
       PARSE_WORKERS, OFFICE_MAX_UNCOMPRESSED_MB, WATCH_POLL_S, WEBHOOK_SECRET, UI_AIRFLOW_PORT, UI_MLFLOW_PORT, MODEL_CACHE,
       ONNX_THREADS, ONNX_BATCH, ONNX_SPIN, RERANKER, RERANK_TOP_N)
