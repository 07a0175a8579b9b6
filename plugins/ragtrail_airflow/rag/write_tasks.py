"""The store side of the pipeline's tasks: the mapped write groups and the index task that finishes after them.

``dedupe`` records, per chunk batch, which embed batches hold the vectors its chunks need
(:func:`record_needs`, the run's ``write_groups.json``); each ``write[k]`` task writes one contiguous group
of the chunk batches through the store seam, reading only those chunk and embed results (one XCom each, by
map index), and leaves a receipt in the work store; ``index`` reads the receipts once every writer is done.
Like every task wrapper (:mod:`ragtrail_airflow.rag.pipeline`), each turns the DAG run's params into the
typed run config, settles what is Airflow's and calls the stage; stage code is imported inside the bodies.
"""

from __future__ import annotations

import json
import os

from ragtrail.core import env_kit
from ragtrail_airflow.rag.source_tasks import run_edge
from ragtrail_airflow.rag.xcom_lists import as_list

WRITE_GROUPS = "write_groups.json"  # per chunk batch: the embed batches it needs; the parts' bounds


SERVER_WRITE_TASKS = 4  # write groups by default with a Qdrant server (it takes parallel writes)


def _server() -> bool:
    return bool(env_kit.QDRANT_URL.get() or os.environ.get("AIRFLOW_CONN_QDRANT_DEFAULT"))


def write_groups() -> list[int]:
    """The write tasks' map indexes, fixed when the DAG is parsed: ``RAGTRAIL_WRITE_TASKS`` small ints (by
    default one on the embedded store, where writers could only take turns, and four with a Qdrant server)."""
    return list(range(env_kit.WRITE_TASKS.get() or (SERVER_WRITE_TASKS if _server() else 1)))


def write_limits() -> dict:
    """How many write tasks of one DAG run run at once (``RAGTRAIL_WRITE_CONCURRENCY``; by default one on the
    embedded store, whose shard one process holds at a time, and all of them on a Qdrant server), and the
    pool they take (``RAGTRAIL_WRITE_POOL``)."""
    limit = env_kit.WRITE_CONCURRENCY.get() or (len(write_groups()) if _server() else 1)
    pool = env_kit.WRITE_POOL.get()
    return {"max_active_tis_per_dagrun": limit, **({"pool": pool} if pool else {})}


def group_batches(group: int, batches: int, groups: int) -> range:
    """The chunk batches of write group ``group`` of ``groups`` (contiguous: dedupe wrote their texts' embed batches in
    that order, so a group needs few of them); the first groups take the batches of a run with fewer batches
    than groups."""
    return range(-(-group * batches // groups), -(-(group + 1) * batches // groups))


def record_needs(work, chunked: list[dict], needs: list[list[int]], batches: int) -> None:
    """Write the run's ``write_groups.json``: per chunk batch the embed batches its chunks need (``needs[i]`` for
    the chunk result ``chunked[i]``, a batch that succeeded; a failed one needs none), and where an embedded store
    cuts a version a writer creates (``parts``, from every chunk batch's first document and size). The groups
    themselves are the DAG's (a write task is told how many there are): a worker's environment never decides
    them."""
    from ragtrail.store.edge_parts import bounds_of_chunks

    by_batch = {c.get("batch", i): n for i, (c, n) in enumerate(zip(chunked, needs, strict=True))}
    parts = bounds_of_chunks(chunked)
    path = work.local / WRITE_GROUPS
    path.write_text(json.dumps({"needs": [by_batch.get(b, []) for b in range(batches)], "parts": parts}))
    work.publish_file(path)


def group_plan(recorded: dict, group: int, groups: int) -> dict:
    """Write group ``group`` of ``groups``: its chunk batches (``first``..``end``) and the embed batches they need."""
    span = group_batches(group, len(recorded["needs"]), groups)
    embed = sorted({e for b in span for e in recorded["needs"][b]})
    return {"group": group, "first": span.start, "end": span.stop, "embed_batches": embed}


def write_label(group: dict) -> str:
    """The write task's name in the Airflow UI (``map_index_template``): ``chunks 4-7``, or ``chunks 3``."""
    first, end = group["first"], group["end"]
    if end <= first:
        return "nothing to write"
    return f"chunks {first}" if end == first + 1 else f"chunks {first}-{end - 1}"


def write(group: int, groups: int = 1, params=None, tracker=None, dag_run=None, results: dict | None = None):
    """Write one group of chunk batches (``group`` of ``groups``, the DAG's write groups): only its own chunk
    results and the embed results they need (``write_groups.json``) are read; a group without batches returns at
    once. ``results``: outside a task instance (bench/scale.py), every ``chunk`` and ``embed`` result, by map
    index."""
    from ragtrail.stages.index_results import write_from_results
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    recorded = json.loads(work.fetch_named(WRITE_GROUPS).read_text())
    plan = group_plan(recorded, int(group), int(groups))
    if results is None:
        from airflow.sdk import get_current_context

        context = get_current_context()
        context["write_label"] = write_label(plan)  # the map index's name in the Airflow UI
        results = {"chunk": lambda ix: _pull(context["ti"], "chunk", ix),
                   "embed": lambda ix: _pull(context["ti"], "embed", ix)}
    else:
        results = {task: (lambda ix, got=got: [got[i] if i < len(got) else None for i in ix])
                   for task, got in results.items()}
    if plan["end"] <= plan["first"]:
        return {"group": int(group), "chunk_batches": 0}
    chunked = results["chunk"](list(range(plan["first"], plan["end"])))
    embedded = results["embed"](plan["embed_batches"])
    result = write_from_results(chunked, embedded, cfg, work.local, dag_run.run_id, group=int(group),
                                recorder=tracker, location=store_settings(), work=work, parts=recorded.get("parts"))
    return work.publish({**result, "chunk_batches": plan["end"] - plan["first"]})


def _pull(ti, task_id: str, map_indexes: list[int]) -> list:
    """The results of these map indexes of a mapped task (``None`` for one that failed), one request each."""
    if not map_indexes:
        return []
    return list(ti.xcom_pull(task_ids=task_id, map_indexes=map_indexes))


def index(written, groups: int = 1, params=None, tracker=None, dag_run=None):
    """After every write group (``all_done``; ``groups``: how many the DAG has): read the receipts, delete the stale and gone points, commit the
    source state, let the store finish the version. A group that left no receipt is named
    (``writes_failed``): its documents are read again next run, and the evaluate task does not move the alias."""
    from ragtrail.stages.index_results import finish_from_receipts
    from ragtrail.store import collection_name
    from ragtrail_airflow.rag.s3 import open_source_state
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    work.fetch_plan()
    state = open_source_state(collection_name(cfg.product, cfg.version))
    results = [w for w in as_list(written) if w]
    receipts = [w for w in results if w.get("receipt_path")]
    done = {w["group"] for w in results}
    empty = [g for g in range(groups) if g in done and g not in {r["group"] for r in receipts}]
    result = finish_from_receipts(receipts, cfg, work.local, groups=groups, recorder=tracker,
                                  location=store_settings(), state_base=state.fetch(work.local), work=work)
    result["writes_failed"] = [g for g in result["writes_failed"] if g not in empty]
    after = result.pop("state_path", None)
    if after:  # after the writes: the next run merges its listing against this
        state.commit(after)
    return result
