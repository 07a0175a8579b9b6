"""The edge between Airflow and the domain code: one small function per pipeline task.

Each takes the DAG run's params, the run's work folder and the stage recorder, calls the stage in
``ragtrail`` and returns a small XCom-sized result. Anything Airflow-specific (connections, fail-fast
exceptions) is settled here so that ``include/ragtrail`` never imports Airflow.
"""

from __future__ import annotations

from pathlib import Path

from ragtrail.recorder import Recorder


def as_list(results) -> list:
    """A mapped task's results as a list, read in one request.

    Iterating Airflow's lazy XCom sequence asks for one item after another until the server answers
    404, which Airflow logs at ERROR ("XCom not found … offset=N") on every healthy run; a slice is
    one request and no error.
    """
    if results is None:
        return []
    if isinstance(results, (list, tuple)):
        return list(results)
    return list(results[:])


def optional(params: dict, key: str, empty: str = "") -> str:
    """A nullable trigger-form field: the form sends ``null`` for a field left (or made) empty."""
    value = params.get(key)
    return empty if value is None else value


def ingest(params: dict, workdir: Path, tracker: Recorder) -> dict:
    """Read the source (local folder, file:// or s3:// through the ``aws_conn_id`` connection)."""
    from airflow.sdk.exceptions import AirflowFailException

    from ragtrail.ingest import NoUsableDocuments, ingest_source
    from ragtrail.tables import TableSpec
    from ragtrail_airflow.s3 import s3_client_factory

    table = TableSpec.from_strings(optional(params, "id_column"), params["text_column"],
                                   optional(params, "metadata_columns"))
    try:
        return ingest_source(params["source"], workdir, recorder=tracker, table=table,
                             max_doc_bytes=int(params["max_file_mb"] * 1024 * 1024),
                             s3_client=s3_client_factory(optional(params, "aws_conn_id", "aws_default")))
    except NoUsableDocuments as err:  # the same source will not improve on a retry
        raise AirflowFailException(str(err)) from err


def plan(params: dict, docs: dict, workdir: Path, tracker: Recorder) -> list[dict]:
    """Decide which documents changed; return the chunk batches to fan out over."""
    from ragtrail.pipeline import build_config
    from ragtrail.plan import plan_sync
    from ragtrail_airflow.qdrant import store_settings

    return plan_sync(docs["docs_path"], workdir, location=store_settings(), product=params["product"],
                     version=params["version"], config=build_config(params), sync_mode=params["sync_mode"],
                     docs_per_batch=params["docs_per_batch"], recorder=tracker)["batches"]


def chunk(params: dict, batch: dict, workdir: Path, tracker: Recorder) -> dict:
    from ragtrail.chunking import chunk_documents

    return chunk_documents(batch["docs_path"], workdir, product=params["product"], chunk_size=params["chunk_size"],
                           chunk_overlap=params["chunk_overlap"], embedder=params["embedder"],
                           out_name=f"batches/chunks_{batch['batch']:05d}.parquet", recorder=tracker)


def dedupe(params: dict, chunked, workdir: Path, tracker: Recorder) -> list[dict]:
    """Collect the distinct new texts of every chunk batch that succeeded; return the embed batches."""
    from ragtrail.dedupe import unique_texts
    from ragtrail.plan import read_plan

    return unique_texts([c["chunks_path"] for c in as_list(chunked) if c], workdir, held_path=read_plan(workdir)["held_path"],
                        texts_per_batch=params["texts_per_batch"], recorder=tracker)["batches"]


def embed(params: dict, batch: dict, workdir: Path, tracker: Recorder) -> dict:
    from ragtrail.embedding import embed_chunks
    from ragtrail.settings import DEFAULT_EMBED_BACKEND

    return embed_chunks(batch["texts_path"], workdir, embedder=params["embedder"], batch_size=params["batch_size"],
                        out_name=f"embed/vectors_{batch['batch']:05d}.npy", recorder=tracker,
                        backend=params.get("embed_backend") or DEFAULT_EMBED_BACKEND)


def index(params: dict, chunked, embedded, workdir: Path, run_id: str, tracker: Recorder) -> dict:
    from ragtrail.pipeline import index_from_results
    from ragtrail_airflow.qdrant import store_settings

    return index_from_results(as_list(chunked), as_list(embedded), params, workdir, run_id, recorder=tracker,
                              location=store_settings())



def evaluate(params: dict, docs: dict | None, tracker: Recorder, tracked_run: dict | None) -> dict:
    """Measure the built version, gate its promotion, and register it (``ragtrail-<product>``) when tracked."""
    from ragtrail.pipeline import build_config, evaluate_from_params
    from ragtrail_airflow.qdrant import store_settings

    store = store_settings()  # one store: the one evaluated is the one the registered model names
    decision = evaluate_from_params(params, recorder=tracker, location=store)
    if tracked_run:
        from ragtrail.retriever import model_name
        from ragtrail_airflow.registry import register_version
        from ragtrail_airflow.tracking import get_client

        number = register_version(get_client(), run_id=tracked_run["run_id"], product=params["product"],
                                  version=params["version"], collection=decision["collection"],
                                  config=build_config(params), decision=decision,
                                  source_digest=(docs or {}).get("digest"), store=store.describe())
        tracker.tag(**{"ragtrail.model_version": f"{model_name(params['product'])}/{number}"})
        decision["model_version"] = number
    return decision


def tune(params: dict, workdir: Path, tracker: Recorder, tracked_run: dict | None) -> dict:
    """Read the source once, run the Optuna study (each trial a nested run of this task's run)."""
    from airflow.sdk.exceptions import AirflowFailException

    from ragtrail.evaluation import load_queries, resolve_query_file
    from ragtrail.ingest import ingest_source
    from ragtrail.tuning import tune_chunking
    from ragtrail_airflow.s3 import s3_client_factory

    queries_path = resolve_query_file(params["source"], optional(params, "eval_queries"))
    if queries_path is None:
        raise AirflowFailException("tuning needs a query set: set the eval_queries param")
    docs = ingest_source(params["source"], workdir / "ingest",
                         s3_client=s3_client_factory(optional(params, "aws_conn_id", "aws_default")))
    on_trial = None
    if tracked_run:
        from ragtrail_airflow.tracking import get_client, log_nested_run

        client = get_client()

        def on_trial(number: int, trial_params: dict, metrics: dict) -> None:
            rec = Recorder()
            rec.param(**trial_params, trial=number)
            rec.metric(**metrics)
            log_nested_run(client, tracked_run["experiment_id"], tracked_run["run_id"], f"trial {number}", rec)

    from ragtrail.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE

    # The study lives in the DAG run's work folder: a retried task resumes it instead of starting over.
    result = tune_chunking(docs["docs_path"], load_queries(queries_path), workdir=workdir,
                           start={"chunk_size": DEFAULT_CHUNK_SIZE, "chunk_overlap": DEFAULT_CHUNK_OVERLAP},
                           storage=f"sqlite:///{Path(workdir).resolve() / 'optuna.db'}",
                           embedders=tuple(e.strip() for e in params["embedders"].split(",") if e.strip()),
                           chunk_size_range=(params["min_chunk_size"], params["max_chunk_size"]),
                           n_trials=params["n_trials"], timeout_s=params["timeout_s"], seed=params["seed"],
                           on_trial=on_trial, recorder=tracker)
    build_conf = {"source": params["source"], "product": params["product"], "version": params["version"],
                  "eval_queries": str(queries_path), **result["best_params"]}
    return {"best_params": result["best_params"], "best_value": result["best_value"],
            "trials": len(result["trials"]), "build_conf": build_conf}


def build_best(result: dict, params: dict, context) -> None:
    """Trigger ``rag_ingest`` with the best configuration as version ``version`` (when ``build_best``)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk.exceptions import AirflowSkipException

    if not params["build_best"]:
        raise AirflowSkipException("build_best is off: the best configuration is only logged")
    TriggerDagRunOperator(task_id="trigger_rag_ingest", trigger_dag_id="rag_ingest",
                          conf=result["build_conf"]).execute(context)
