"""A mapped task's one MLflow run: found or created race-free by its map indexes, each one's record a step.

Every map index (and try) of a mapped ``@task.tracked`` task shares one run, so the number of runs per DAG
run does not grow with the corpus. :func:`find_or_create_mapped_run` makes it exactly once across processes
and hosts (a write-once claim param on the parent run); :func:`log_map_index` writes one map index's figures
as metric steps at ``step = map_index``. :func:`ragtrail.trail.closer.close_mapped` reads and ends it.
Nothing here knows Airflow; ``mlflow`` is imported inside functions.
"""

from __future__ import annotations

import logging
import time

from ragtrail.core.recorder import Recorder
from ragtrail.trail.names import (
    CLAIM_PARAM,
    ERROR_TAG,
    MAP_DURATION_S,
    MAP_ERROR_TAG,
    MAP_OK,
    MAP_TRY,
    MAPPED_TAG,
    PARENT_TAG,
    TASK_TAG,
    quote,
    redact,
)
from ragtrail.trail.runs import _BAD_KEY, _chunks, _log_files, _log_inputs

log = logging.getLogger(__name__)

# How long a map index waits for the run another one claimed (its create_run takes milliseconds); past it the
# claimer is taken for dead (SIGKILLed between claim and create) and the next claim generation is tried.
CLAIM_WAIT_S, CLAIM_POLL_S, CLAIM_GENERATIONS = 20.0, 0.1, 3


def find_mapped_run(client, experiment_id: str, parent_run_id: str, task_id: str):
    """The one run of a mapped task under ``parent_run_id`` (found by its tags), or ``None``."""
    runs = client.search_runs(
        [experiment_id],
        f"tags.`{PARENT_TAG}` = {quote(parent_run_id)} and tags.`{TASK_TAG}` = {quote(task_id)} "
        f"and tags.`{MAPPED_TAG}` = 'true'",
        order_by=["attributes.start_time ASC"], max_results=10)
    return min(runs, key=lambda r: (r.info.start_time, r.info.run_id)) if runs else None


def claim(client, run_id: str, key: str, claimer: str) -> bool:
    """Claim ``key`` on ``run_id`` for ``claimer``: MLflow params are write-once (a second value is refused,
    the same value again is a no-op), so exactly one claimer of a key wins, across processes and hosts."""
    try:
        client.log_param(run_id, key, claimer)
    except Exception as err:  # refused (another value is there) or lost: the stored value decides
        held = client.get_run(run_id).data.params.get(key)
        if held is None:
            raise err
        return held == claimer
    return True


def find_or_create_mapped_run(client, experiment_id: str, parent_run_id: str, *, task_id: str, tags: dict,
                              run_name: str, claimer: str, wait_s: float | None = None) -> tuple[object, bool]:
    """The one MLflow run every map index (and try) of a mapped task shares; ``(run, created_here)``.

    Race-free: the first map index to find none claims the param ``ragtrail.claim.<task_id>`` on the parent
    run (write-once, so one claimer wins) and only the winner creates the run; the others wait for it to
    appear. A claimer that died between its claim and its run (SIGKILL) holds up the others ``wait_s``; then
    the next claim generation (``ragtrail.claim.<task_id>.1``…) is tried. The run stays RUNNING until the
    roll-up (or the DAG-run closer) closes it from every map index's Airflow state.
    """
    wait_s = CLAIM_WAIT_S if wait_s is None else wait_s
    for generation in range(CLAIM_GENERATIONS):
        found = find_mapped_run(client, experiment_id, parent_run_id, task_id)
        if found is not None:
            return found, False
        key = f"{CLAIM_PARAM}.{task_id}" + (f".{generation}" if generation else "")
        if claim(client, parent_run_id, key, claimer):
            return client.create_run(experiment_id, run_name=run_name, tags={**tags, MAPPED_TAG: "true"}), True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(CLAIM_POLL_S)
            found = find_mapped_run(client, experiment_id, parent_run_id, task_id)
            if found is not None:
                return found, False
    raise RuntimeError(f"no MLflow run for mapped task {task_id}: {CLAIM_GENERATIONS} claimers never created it")


def log_map_index(client, run_id: str, rec: Recorder, *, map_index: int, try_number: int, ok: bool,
                  duration_s: float, extra: dict | None = None) -> None:
    """One map index's record on its task's shared run: its metrics (with ``map_ok``, ``map_duration_s``,
    ``map_try``) as steps at ``step = map_index``, its error as the tag ``ragtrail.map_error.<map_index>``,
    its other tags and params (a param another map index set otherwise is kept as it is). Progress steps
    are dropped (one task's curve cannot interleave its map indexes); files only from map index 0 (a sample:
    every map index's would grow the trail with the corpus), and those marked ``every_map_index`` (a shard's
    quarantine list); its dataset input only from map index 0."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    values = {**rec.metrics, **(extra or {}), MAP_OK: 1.0 if ok else 0.0, MAP_DURATION_S: duration_s,
              MAP_TRY: float(try_number)}
    metrics = [Metric(_BAD_KEY.sub("_", k)[:250], float(v), now, map_index) for k, v in values.items()]
    tags = {k: v for k, v in rec.tags.items() if not k.startswith(ERROR_TAG)}
    if ERROR_TAG in rec.tags:
        tags[f"{MAP_ERROR_TAG}.{map_index}"] = rec.tags[ERROR_TAG]
    run_tags = [RunTag(k[:250], redact(k, v)[:5000]) for k, v in tags.items()]
    for i, batch in enumerate(_chunks(metrics, 900)):
        client.log_batch(run_id, metrics=batch, tags=run_tags if i == 0 else ())
    if rec.params:
        try:
            client.log_batch(run_id, params=[Param(k[:250], redact(k, v)[:6000]) for k, v in rec.params.items()])
        except Exception as err:  # a param another map index logged with another value: the first stays
            log.info("map index %s: params not logged (%s)", map_index, str(err)[:200])
    if map_index == 0:
        _log_files(client, run_id, rec)
        _log_inputs(client, run_id, rec)
    else:
        for path, artifact_path in rec.files:
            if path in rec.every_map_index and path.exists():
                client.log_artifact(run_id, str(path), artifact_path)
    rec.every_map_index.clear()
    rec.params.clear(), rec.metrics.clear(), rec.tags.clear(), rec.files.clear(), rec.dicts.clear()
    rec.datasets.clear(), rec.tables.clear(), rec.steps.clear()
