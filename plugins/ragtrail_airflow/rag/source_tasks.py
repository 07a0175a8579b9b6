"""The source side of the pipeline's tasks: split the source into shards, ingest each shard (mapped), and plan
from every shard's result. Like every task wrapper (:mod:`ragtrail_airflow.rag.pipeline`), each turns the DAG
run's params into the typed run config, settles what is Airflow's and calls the stage; stage code is imported
inside the bodies.
"""

from __future__ import annotations

import logging

from ragtrail_airflow.rag.xcom_lists import as_list

log = logging.getLogger(__name__)


def run_edge(params, dag_run, tracker):
    """The run's typed config and its work (:class:`ragtrail.core.workstore.RunWork`: a local folder, and the
    work store when ``RAGTRAIL_WORK_URL`` names one). The task's local copies are released once the
    operator has logged the stage's artifacts (some are files in that folder)."""
    from ragtrail.core.spec import run_config
    from ragtrail_airflow.rag.s3 import open_work

    work = open_work(dag_run.dag_id, dag_run.run_id)
    tracker.after_logging.append(work.release)
    return run_config(params), work


def _source_access(cfg) -> tuple:
    """How this run reads the source: the table spec, the largest object read, the S3 client factory (the split's
    fingerprint and every ingest shard's reading must agree on them)."""
    from ragtrail.sources.tables import TableSpec
    from ragtrail_airflow.rag.s3 import s3_client_factory

    table = TableSpec.from_strings(cfg.id_column or "", cfg.text_column, cfg.metadata_columns or "")
    return table, int(cfg.max_file_mb * 1024 * 1024), s3_client_factory(cfg.aws_conn_id or "aws_default")


def split(params=None, tracker=None, dag_run=None) -> list[int]:
    """Cut the source into shards of ``docs_per_shard`` objects (key ranges, from the version's source state or
    one keys-only listing); return the shard numbers, one mapped ingest task each (never more than Airflow's
    ``[core] max_map_length``: the shards grow to fit)."""
    from ragtrail.stages.split import split_source
    from ragtrail.stages.sync_state import collection_stamp, fingerprint
    from ragtrail.store import collection_name
    from ragtrail_airflow.failures import max_map_length
    from ragtrail_airflow.rag.s3 import open_source_state
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    table, max_doc_bytes, s3_client = _source_access(cfg)
    collection = collection_name(cfg.product, cfg.version)
    stamp = collection_stamp(store_settings(), collection)  # once here, not once per ingest shard
    result = split_source(cfg.source, work.local, docs_per_shard=cfg.docs_per_shard, max_shards=max_map_length(),
                          s3_client=s3_client, state_path=open_source_state(collection).fetch(work.local),
                          state_stamp=stamp, state_fingerprint=fingerprint(cfg.source, table, max_doc_bytes),
                          recorder=tracker, extra={"state_stamp": stamp})
    work.publish_file(result["split_path"])
    return list(range(result["shards"]))


def ingest(shard: int = 0, params=None, tracker=None, dag_run=None):
    """Read one shard of the source (local folder, file:// or s3:// through the ``aws_conn_id`` connection):
    only its new and changed objects, merged against its rows of the version's source state."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from ragtrail.stages.ingest import NoUsableDocuments, ingest_source
    from ragtrail.stages.split import SPLIT_FILE, read_shard, shard_label
    from ragtrail.store import collection_name
    from ragtrail_airflow.rag.s3 import open_source_state

    cfg, work = run_edge(params, dag_run, tracker)
    key_range, of, stamp = read_shard(work.fetch_named(SPLIT_FILE), shard)
    label = shard_label(shard, of, key_range)
    try:
        get_current_context()["shard_label"] = label  # the map index's name in the Airflow UI (map_index_template)
    except RuntimeError:  # called outside a task instance (a notebook, bench/scale.py): nothing to name
        pass
    table, max_doc_bytes, s3_client = _source_access(cfg)
    collection = collection_name(cfg.product, cfg.version)
    workdir = work.local if of == 1 else work.local / "shards" / f"{shard:05d}"
    try:  # only new and changed objects are read: the listing is merged against the version's source state
        result = ingest_source(cfg.source, workdir, recorder=tracker, table=table, max_doc_bytes=max_doc_bytes,
                               s3_client=s3_client, state_path=open_source_state(collection).fetch(work.local),
                               state_stamp=stamp, key_range=key_range, shard=None if of == 1 else label)
        return work.publish({**result, "shard_index": shard})
    except NoUsableDocuments as err:  # the same source will not improve on a retry
        raise AirflowFailException(str(err)) from err


def plan(docs, params=None, tracker=None, dag_run=None) -> list[int]:
    """Gather the ingest shards that succeeded (a failed one leaves its documents as the index holds them: the run
    ends PARTIAL, naming it), decide which documents changed; return the chunk batches' numbers to fan out over
    (never more than Airflow's ``[core] max_map_length``: ``docs_per_batch`` grows to fit, and the task log
    says so)."""
    from airflow.sdk.exceptions import AirflowFailException

    from ragtrail.stages.plan import plan_sync
    from ragtrail.stages.split import SPLIT_FILE, gather, read_split
    from ragtrail_airflow.failures import max_map_length
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    read = [r for r in work.fetch(as_list(docs)) if r]  # a failed shard has no result (all_done_min_one_success)
    ranges, _ = read_split(work.fetch_named(SPLIT_FILE))
    failed = sorted(set(range(len(ranges))) - {r.get("shard_index", 0) for r in read})
    shards = gather(read, work.local, ranges)  # the ranges: the state's parts after this run's commit
    if shards.get("empty_reason"):  # no shard found a usable document (one shard fails in ingest itself)
        raise AirflowFailException(shards["empty_reason"])
    if failed:  # their objects were not read: nothing of theirs may be taken for deleted, nor their state changed
        log.warning("plan: %s of %s ingest shards failed (%s): their documents stay as the index holds them",
                    len(failed), len(ranges), ", ".join(f"ingest[{i}]" for i in failed))
    planned = plan_sync(shards["docs_paths"], work.local, location=store_settings(), product=cfg.product,
                        version=cfg.version, config=cfg.version_config(), sync_mode=cfg.sync_mode,
                        docs_per_batch=cfg.docs_per_batch, max_batches=max_map_length(), recorder=tracker,
                        delta_path=shards.get("delta_path"), carried=shards.get("docs_carried", 0),
                        unread=[ranges[i] for i in failed],
                        extra={"source_digest": shards.get("digest"), "shards_failed": failed})
    # XCom carries only the batch numbers (~5 bytes each: 1,024 batches in 6 KB); chunk reads its batch from the plan
    return list(range(len(work.publish_plan(planned)["batches"])))
