"""The task graph every ingest DAG runs, its trigger-form params, and the one wrapper of each task.

preflight → split → ingest[] → plan → chunk[] → dedupe → embed[] → write_groups → write[] → index → evaluate → approve → aggregate_status,
where ``[]`` marks tasks mapped over shards of the source (ingest), batches of its changes (chunk, embed) and groups
of those batches (write: :mod:`ragtrail_airflow.rag.write_tasks`). ``dags/rag_ingest.py`` (manual, any product) and ``dags/rag_products.py`` (one
scheduled DAG per product in the products file) both call :func:`build_pipeline` inside their
``@dag`` function.

Each task below is the Airflow edge of one stage: it turns the DAG run's params into the typed
:class:`ragtrail.core.spec.RunConfig` (the raw dict stops here), settles what is Airflow's (connections,
fail-fast exceptions, XCom lists) and calls the stage in ``ragtrail``. This module imports only
``airflow.sdk`` and light ``ragtrail`` modules at import time; task bodies import the stage code when
they run.

Example (a DAG file)::

    @dag(dag_id="my_ingest", schedule=None, params=pipeline_params(product="docs"),
         default_args=default_args())
    def my_ingest():
        build_pipeline()
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from airflow.sdk import Param, task

from ragtrail.core import env_kit
from ragtrail.core.spec import FIELDS, form_schemas
from ragtrail_airflow.rag.approval import PromotionApproval
from ragtrail_airflow.rag.assets import INDEX_ALIAS
from ragtrail_airflow.rag.source_tasks import ingest, plan, split
from ragtrail_airflow.rag.source_tasks import run_edge as _edge
from ragtrail_airflow.rag.write_tasks import index, record_needs, write, write_groups, write_limits
from ragtrail_airflow.rag.xcom_lists import as_list

EMBED_BATCHES = "embed_batches.json"  # the dedupe task's embed batches, each embed task reads its own


def cpu_pool() -> dict:
    """CPU-heavy mapped tasks share a pool when ``RAGTRAIL_CPU_POOL`` names one (compose and the
    cluster test create it; a scheduler never runs a task whose pool does not exist)."""
    pool = env_kit.CPU_POOL.get()
    return {"pool": pool} if pool else {}


def store_queue() -> dict:
    """Tasks that open the Qdrant store (split, plan, write, index, evaluate) go to one Celery queue when
    ``RAGTRAIL_STORE_QUEUE`` names one and no Qdrant server is configured: a local-mode store is a folder
    on one host, so one worker (the one serving that queue) must run them all. With a server
    (``RAGTRAIL_QDRANT_URL`` or an ``AIRFLOW_CONN_QDRANT_DEFAULT``) they run on any worker."""
    queue = env_kit.STORE_QUEUE.get()
    server = env_kit.QDRANT_URL.get() or os.environ.get("AIRFLOW_CONN_QDRANT_DEFAULT")
    return {"queue": queue} if queue and not server else {}


def default_args() -> dict:
    """Retries for every pipeline task (``RAGTRAIL_TASK_RETRIES``, ``RAGTRAIL_RETRY_DELAY_S``)."""
    return {"retries": env_kit.TASK_RETRIES.get(), "retry_delay": timedelta(seconds=env_kit.RETRY_DELAY_S.get())}


def form_params(schemas: dict[str, dict]) -> dict[str, Param]:
    """Trigger-form fields of run-spec rows (:func:`ragtrail.core.spec.form_schemas`). An optional row's type
    includes ``"null"``, so the form submits as it opens (a bare ``"string"`` type is required, and a
    ``""`` default would block the Trigger button); a titled section is a collapsed group."""
    return {name: Param(kw.pop("default"), **kw) for name, kw in schemas.items()}


def pipeline_params(*, fixed_product: bool = False, **defaults) -> dict[str, Param]:
    """Typed, described DAG params (the Airflow trigger form) with these defaults (any spec row).

    Args:
        fixed_product: a product's own DAG may only build that product.
    """
    schemas = form_schemas(FIELDS, **defaults)
    if fixed_product:
        product = schemas["product"]
        product.pop("pattern", None)
        product["enum"] = [product["default"]]
    return form_params(schemas)


def evaluate_version(cfg, docs: dict | None, tracker, tracked_run: dict | None) -> dict:
    """The evaluate task's work: gate the version on the pipeline's store, and register that same store
    (its secret-free description) with the model when tracked."""
    from ragtrail.stages import gate
    from ragtrail.stages.evaluation import resolve_query_file
    from ragtrail_airflow.rag.store_conn import store_settings

    store = store_settings()  # one store: the one evaluated is the one the registered model names
    decision = gate.evaluate_and_promote(
        location=store, product=cfg.product, version=cfg.version,
        queries_path=resolve_query_file(cfg.source, cfg.eval_queries or ""),
        promote=cfg.promote, hold=cfg.approval == "always",  # "always": the approve task moves the alias
        min_ndcg=cfg.min_ndcg, tolerance=cfg.eval_tolerance, keep_versions=cfg.keep_versions, recorder=tracker)
    if cfg.approval != "off" and cfg.promote and not decision["promoted"]:
        from ragtrail_airflow.rag.approval import needs_approval

        if needs_approval(cfg.approval, decision):
            decision["awaiting_approval"] = True
            from ragtrail.trail.names import APPROVAL_TAG

            tracker.tag(**{APPROVAL_TAG: "awaiting"})
    if tracked_run:
        from ragtrail.models import registration
        from ragtrail.trail import registry
        from ragtrail.trail.client import guarded_client
        from ragtrail.trail.names import MODEL_VERSION_TAG, model_name
        from ragtrail_airflow.config import policy

        number = registration.register_version(guarded_client(policy()), run_id=tracked_run["run_id"],
                                               product=cfg.product, version=cfg.version,
                                               collection=decision["collection"], config=cfg.version_config(),
                                               decision=decision, source_digest=(docs or {}).get("digest"),
                                               store=store.describe())
        tracker.tag(**{MODEL_VERSION_TAG: f"{model_name(cfg.product)}/{number}"})
        decision.update(model_version=number, mlflow_run_id=tracked_run["run_id"],
                        archived=registry.archive_versions(guarded_client(policy()), cfg.product, decision["pruned"]))
    return decision


def publish_promotion(outlet_events, cfg, decision: dict) -> None:
    """The index asset event of a build the gate put live (none when the alias did not move)."""
    from ragtrail_airflow.rag.assets import publish_index

    if decision["promoted"]:
        publish_index(outlet_events, cfg.product, collection=decision["collection"], version=cfg.version,
                      metrics=decision["metrics"], model_version=decision.get("model_version"), cause="gate")


# The tasks: one wrapper per stage, decorated (tracked, pool, trigger rule) where build_pipeline wires them,
# so that a pool or queue named in the environment is read when the DAG is built.

def preflight(params=None, tracker=None, dag_run=None) -> dict:
    """Source readable, connection known, store answering: else fail at once, no retries, the cause first."""
    from ragtrail.core.spec import run_config
    from ragtrail_airflow.rag.preflight import check

    return check(run_config(params))


def chunk(batch, params=None, tracker=None, dag_run=None):
    """Chunk one batch of the plan (``batch``: its number; the plan file holds its documents' file)."""
    from ragtrail.stages.chunking import chunk_documents

    cfg, work = _edge(params, dag_run, tracker)
    batch = work.fetch(_batch_of(batch, work.read_plan, "plan"))
    return work.publish({**chunk_documents(
        batch["docs_path"], work.local, product=cfg.product, chunk_size=cfg.chunk_size,
        chunk_overlap=cfg.chunk_overlap, embedder=cfg.embedder,
        out_name=f"batches/chunks_{batch['batch']:05d}.parquet", recorder=tracker), "batch": batch["batch"]})


def _batch_of(batch, listing, stage: str) -> dict:
    """Batch ``batch`` of ``stage``'s published list (``listing()`` reads it); a batch passed whole (as a run
    begun by an earlier release passed it) is taken as it is."""
    if isinstance(batch, dict):
        return batch
    batches = (listing() or {}).get("batches", ())
    if not 0 <= int(batch) < len(batches):
        raise RuntimeError(f"batch {batch} is not in the {stage} task's published batches: did {stage} complete?")
    return batches[int(batch)]


def dedupe(chunked, params=None, tracker=None, dag_run=None) -> list[int]:
    """Collect the distinct new texts of every chunk batch that succeeded; return the embed batches. Per chunk
    batch it records which embed batches its chunks need (``write_groups.json``): a writer reads only those."""
    from ragtrail.stages.dedupe import unique_texts
    from ragtrail.stages.plan import read_plan
    from ragtrail.store import collection_name
    from ragtrail_airflow.failures import max_map_length
    from ragtrail_airflow.rag.s3 import open_source_state

    cfg, work = _edge(params, dag_run, tracker)
    work.fetch_plan()
    done = [c for c in work.fetch(as_list(chunked)) if c]
    chunk_paths = [c["chunks_path"] for c in done]
    # The version's chunk hashes: the state the plan seeded from a scroll, else the committed state.
    held = read_plan(work.local).get("held_path") or open_source_state(
        collection_name(cfg.product, cfg.version)).fetch(work.local)
    unique = work.publish(unique_texts(chunk_paths, work.local, held_path=held, texts_per_batch=cfg.texts_per_batch,
                                       max_batches=max_map_length(), recorder=tracker))
    batches = unique["batches"]
    record_needs(work, done, unique["needs"], len(read_plan(work.local)["batches"]))
    listing = work.local / EMBED_BATCHES
    listing.write_text(json.dumps({"batches": batches}))
    work.publish_file(listing)
    return list(range(len(batches)))  # XCom: the numbers; each embed task reads its batch from the file


def embed(batch, params=None, tracker=None, dag_run=None):
    """Embed one batch of distinct texts (``batch``: its number in the dedupe task's published list)."""
    from ragtrail.stages.embedding import embed_chunks

    cfg, work = _edge(params, dag_run, tracker)
    batch = work.fetch(_batch_of(batch, lambda: json.loads(work.fetch_named(EMBED_BATCHES).read_text()), "dedupe"))
    return work.publish(embed_chunks(
        batch["texts_path"], work.local, embedder=cfg.embedder, batch_size=cfg.batch_size,
        out_name=f"embed/vectors_{batch['batch']:05d}.npy", recorder=tracker, backend=cfg.embed_backend))


def evaluate(indexed: dict, params=None, tracker=None, tracked_run=None, dag_run=None, outlet_events=None):
    """Measure the built version, gate its promotion, and register it (``ragtrail-<product>``, with the source
    digest the plan recorded) when tracked; an index asset event when the alias moved. A write group that left
    no receipt (``writes_failed``) holds the alias where it is: part of the version may be half written."""
    import dataclasses

    cfg, work = _edge(params, dag_run, tracker)
    failed = (indexed or {}).get("writes_failed")
    if failed:
        cfg = dataclasses.replace(cfg, promote=False)
    decision = evaluate_version(cfg, {"digest": (work.read_plan() or {}).get("source_digest")}, tracker, tracked_run)
    if failed:
        decision["reason"] = f"write[{', '.join(map(str, failed))}] left no receipt: not promoted; {decision['reason']}"
    publish_promotion(outlet_events, cfg, decision)
    return decision


def aggregate_status(**context):
    from ragtrail_airflow.rag.aggregate import aggregate_status as rollup

    return rollup(context)


def build_pipeline() -> None:
    """Create the pipeline's tasks in the DAG being defined (call it inside a ``@dag`` function)."""
    tracked = task.tracked
    checked = tracked(stage="preflight", retries=0)(preflight)()
    shards = tracked(stage="split", **store_queue())(split)()  # reads the version's state beside the store
    checked >> shards
    # the shards run on any worker, in parallel (a CPU pool slot each): none of them opens the store
    docs = tracked(stage="ingest", map_index_template="{{ shard_label }}", **cpu_pool())(ingest).expand(shard=shards)
    # all_done_min_one_success: a failed shard does not stop the others (the run ends PARTIAL, naming it); no shard
    # read is the failure above (upstream_failed)
    planned = tracked(stage="plan", fan_out="docs_per_batch", trigger_rule="all_done_min_one_success",
                      **store_queue())(plan)(docs)
    chunked = tracked(stage="chunk", **cpu_pool())(chunk).expand(batch=planned)
    # all_done: a failed chunk batch must not stop the others; needs: nothing to do behind a failed plan.
    unique = tracked(stage="dedupe", trigger_rule="all_done", needs=("plan",), fan_out="texts_per_batch")(dedupe)(
        chunked)
    embedded = tracked(stage="embed", **cpu_pool())(embed).expand(batch=unique)
    # all_done: a failed embed batch skips only the documents missing its vectors; a pool and a per-run cap
    # throttle the writes (two at a time on the embedded store: writers of different parts run side by side)
    # the write groups, decided at run time by dedupe (write_groups.json): bounded work each, none across two of an
    # embedded store's parts; this light task hands their numbers to the mapped write task
    groups = task(task_id="write_groups", retries=env_kit.TASK_RETRIES.get())(write_groups)()
    unique >> groups
    written = tracked(stage="write", trigger_rule="all_done", needs=("dedupe",), map_index_template="{{ write_label }}",
                      **write_limits(), **store_queue())(write).expand(group=groups)
    embedded >> written
    # all_done: after every write group, also when some failed (they are named, and the alias stays)
    indexed = tracked(stage="index", trigger_rule="all_done", needs=("plan",), **store_queue())(index)(written)
    evaluated = tracked(stage="evaluate", outlets=[INDEX_ALIAS], **store_queue())(evaluate)(indexed)
    planned >> evaluated  # it reads the source digest from the plan; and a run that never planned never evaluates
    # Waits for a person only when the run's approval param asks for it; skips itself otherwise.
    approve = PromotionApproval(task_id="approve", outlets=[INDEX_ALIAS], retries=0, **store_queue())
    evaluated >> approve
    # index runs only once every chunk/embed/write batch is done (all_done) and evaluate and approve come after it:
    # when these are done, so is every task, and the graph needs no edge from each of them.
    [indexed, evaluated, approve] >> task.rollup(trigger_rule="all_done", retries=0)(aggregate_status)()
