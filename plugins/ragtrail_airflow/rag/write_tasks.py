"""The store side of the pipeline's tasks: the mapped write groups and the index task that finishes after them.

``dedupe`` records, per chunk batch, which embed batches hold the vectors its chunks need, and cuts the run's
chunk batches into write groups of bounded size, never across an embedded store's part (:func:`record_needs`,
:func:`cut_groups`: the run's ``write_groups.json``); ``write_groups`` hands their numbers to the mapped
``write`` task (decided at run time: a group's work does not grow with the corpus); each ``write[k]`` task
writes one contiguous group of the chunk batches through the store seam, reading only those chunk and embed results (one XCom each, by
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

WRITE_GROUPS = "write_groups.json"  # per chunk batch: the embed batches it needs; the parts' bounds; the groups


SERVER_WRITE_TASKS = 4  # write groups at least, by default, with a Qdrant server (it takes parallel writes)
EDGE_WRITE_CONCURRENCY = 2  # writers at once on the embedded store by default (measured on 2 cores: docs/scaling.md)


def _server() -> bool:
    return bool(env_kit.QDRANT_URL.get() or os.environ.get("AIRFLOW_CONN_QDRANT_DEFAULT"))


def write_limits() -> dict:
    """How many write tasks of one DAG run run at once (``RAGTRAIL_WRITE_CONCURRENCY``; by default
    :data:`EDGE_WRITE_CONCURRENCY` on the embedded store, where writers of different parts run side by side and
    those of one part take turns, and :data:`SERVER_WRITE_TASKS` on a Qdrant server), and the pool they take
    (``RAGTRAIL_WRITE_POOL``)."""
    limit = env_kit.WRITE_CONCURRENCY.get() or (SERVER_WRITE_TASKS if _server() else EDGE_WRITE_CONCURRENCY)
    pool = env_kit.WRITE_POOL.get()
    return {"max_active_tis_per_dagrun": limit, **({"pool": pool} if pool else {})}


def cut_groups(batches: list[tuple[str | None, int]], bounds: list[str], per_group: int,
               at_least: int = 1) -> list[list[int]]:
    """The write groups of a run: ``[first, end)`` chunk batch ranges, contiguous, covering every batch.

    ``batches``: per chunk batch, ``(first doc id, points)`` (``(None, 0)`` for a failed one). A group holds
    about ``total / k`` points, ``k = max(at_least, ceil(total / per_group))`` (``per_group`` 0: no cap), and
    at most one batch more; a new group also begins wherever a batch's first document falls in another part of
    ``bounds`` (:func:`ragtrail.store.edge_parts.part_of`): a group never spans two parts of an embedded store
    cut at those bounds, so writers of different groups lock different shards. Never more groups than batches
    (so never past Airflow's ``max_map_length``, which the plan already keeps the batches under).

    Example::

        cut_groups([("a", 5), ("c", 5), ("f", 5), ("k", 5)], ["f"], 100)  # [[0, 2], [2, 4]]: the part bound
        cut_groups([("a", 5), ("c", 5), ("f", 5), ("k", 5)], [], 10)     # [[0, 2], [2, 4]]: 10 points a group
    """
    from ragtrail.store.edge_parts import part_of

    if not batches:
        return []
    total = sum(int(n or 0) for _, n in batches)
    k = max(int(at_least), 1, -(-total // per_group) if per_group > 0 else 1)
    groups: list[list[int]] = []
    held, part, share = 0, None, None
    for i, (first, points) in enumerate(batches):
        if first is None or not points:  # a failed (or empty) batch rides along with the group before it
            here, cut = part, share
        else:
            here, cut = part_of(bounds, first), held * k // total  # its part; the balanced share it begins in
        if groups and share is not None and (cut != share or here != part):
            groups[-1][1] = i
        if not groups or groups[-1][1] == i:
            groups.append([i, len(batches)])
        held += int(points or 0)
        part, share = here, cut
    return groups


def record_needs(work, chunked: list[dict], needs: list[list[int]], batches: int) -> int:
    """Write the run's ``write_groups.json`` and return how many write groups the run has: per chunk batch the
    embed batches its chunks need (``needs[i]`` for the chunk result ``chunked[i]``, a batch that succeeded; a
    failed one needs none), where an embedded store cuts a version a writer creates (``parts``, from every
    chunk batch's first document and size), and the write groups (``groups``, :func:`cut_groups`: at most
    ``RAGTRAIL_WRITE_GROUP_POINTS`` points each, at least ``RAGTRAIL_WRITE_TASKS`` of them, cut at the parts).
    Decided once, here, at run time: every write task and the index task read them from this file."""
    from ragtrail.store.edge_parts import bounds_of_chunks

    by_batch = {c.get("batch", i): n for i, (c, n) in enumerate(zip(chunked, needs, strict=True))}
    sizes = {c.get("batch", i): (c.get("first_doc"), c.get("chunks") or 0) for i, c in enumerate(chunked)}
    parts = bounds_of_chunks(chunked)
    at_least = env_kit.WRITE_TASKS.get() or (SERVER_WRITE_TASKS if _server() else 1)
    groups = cut_groups([sizes.get(b, (None, 0)) for b in range(batches)], parts, env_kit.WRITE_GROUP_POINTS.get(),
                        at_least)
    path = work.local / WRITE_GROUPS
    path.write_text(json.dumps({"needs": [by_batch.get(b, []) for b in range(batches)], "parts": parts,
                                "groups": groups}))
    work.publish_file(path)
    return len(groups)


def recorded_groups(work, missing_ok: bool = False) -> dict | None:
    """The run's ``write_groups.json``; with ``missing_ok``, ``None`` when it cannot be read (dedupe did not
    complete: the index task then finds no receipt, and says so)."""
    try:
        return json.loads(work.fetch_named(WRITE_GROUPS).read_text())
    except Exception:
        if missing_ok:
            return None
        raise


def group_plan(recorded: dict, group: int, fixed: int | None = None) -> dict:
    """Write group ``group`` of the recorded ones: its chunk batches (``first``..``end``) and the embed batches
    they need. ``fixed``: a run begun by an earlier release, whose DAG fixed the number of groups and whose dedupe
    recorded none: its groups split the batches evenly."""
    n = len(recorded["needs"])
    groups = recorded.get("groups") or [[-(-g * n // fixed), -(-(g + 1) * n // fixed)] for g in range(fixed or 0)]
    if not 0 <= group < len(groups):
        raise RuntimeError(f"write group {group} is not among the {len(groups)} the dedupe task recorded")
    first, end = groups[group]
    embed = sorted({e for b in range(first, end) for e in recorded["needs"][b]})
    return {"group": group, "first": first, "end": end, "embed_batches": embed}


def write_groups(params=None, dag_run=None) -> list[int]:
    """The ``write_groups`` task: the numbers of the write groups dedupe recorded, one mapped ``write`` task each
    (the XCom is at most one small int per chunk batch: under ``max_map_length`` and ~5 KB at 10M documents)."""
    from ragtrail_airflow.rag.s3 import open_work

    work = open_work(dag_run.dag_id, dag_run.run_id)
    try:
        return list(range(len(recorded_groups(work)["groups"])))
    finally:
        work.release()  # the fetched write_groups.json: a worker keeps no run's copy


def write_label(group: dict) -> str:
    """The write task's name in the Airflow UI (``map_index_template``): ``chunks 4-7``, or ``chunks 3``."""
    first, end = group["first"], group["end"]
    if end <= first:
        return "nothing to write"
    return f"chunks {first}" if end == first + 1 else f"chunks {first}-{end - 1}"


def write(group: int, params=None, tracker=None, dag_run=None, results: dict | None = None, groups: int | None = None):
    """Write one group of chunk batches (``group``: its number among those dedupe recorded in
    ``write_groups.json``): only its own chunk results and the embed results they need are read. ``results``:
    outside a task instance (bench/scale.py), every ``chunk`` and ``embed`` result, by map index. ``groups``: the
    number of groups an earlier release's DAG passed (:func:`group_plan`)."""
    from ragtrail.stages.index_results import write_from_results
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    recorded = recorded_groups(work)
    plan = group_plan(recorded, int(group), groups)
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


def index(written, params=None, tracker=None, dag_run=None, groups: int | None = None):
    """After every write group (``all_done``): read the receipts, delete the stale and gone points, commit the
    source state, let the store finish the version. A group that dedupe recorded (``write_groups.json``) and that
    left no receipt is named (``writes_failed``): its documents are read again next run, and the evaluate task
    does not move the alias. ``groups``: what an earlier release's DAG passed, for a run it began."""
    from ragtrail.stages.index_results import finish_from_receipts
    from ragtrail.store import collection_name
    from ragtrail_airflow.rag.s3 import open_source_state
    from ragtrail_airflow.rag.store_conn import store_settings

    cfg, work = run_edge(params, dag_run, tracker)
    work.fetch_plan()
    state = open_source_state(collection_name(cfg.product, cfg.version))
    results = [w for w in as_list(written) if w]
    receipts = [w for w in results if w.get("receipt_path")]
    groups = len((recorded_groups(work, missing_ok=True) or {}).get("groups") or []) or groups or 0
    done = {w["group"] for w in results}
    empty = [g for g in range(groups) if g in done and g not in {r["group"] for r in receipts}]
    result = finish_from_receipts(receipts, cfg, work.local, groups=groups, recorder=tracker,
                                  location=store_settings(), state_base=state.fetch(work.local), work=work)
    result["writes_failed"] = [g for g in result["writes_failed"] if g not in empty]
    after = result.pop("state_path", None)
    if after:  # after the writes: the next run merges its listing against this
        state.commit(after)
    return result
