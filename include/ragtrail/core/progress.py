"""How far along a stage is: rate-limited progress lines, per-batch step metrics, one closing line.

Every stage that can run for more than a few seconds counts its work through a :class:`Progress`.
It logs (standard ``logging``, logger ``ragtrail.progress``: the Airflow task log, and the CLI's
stderr) at most one line every ``RAGTRAIL_PROGRESS_S`` seconds (default 15) with
done / total, rate and ETA, and one closing line with the stage's counts and time. When given a
:class:`~ragtrail.core.recorder.Recorder` it also records each batch's figures as step metrics
(``<stage>_done``, ``<stage>_per_s``), which the task's MLflow run plots over the task.

Example::

    progress = Progress("embed", total=len(texts), unit="texts", recorder=rec)
    for batch in batches:
        ...
        progress.update(len(batch))
    progress.finish(dimension=384)
    # embed: 2,048 texts in 71.3 s (28.7 texts/s); dimension 384
"""

from __future__ import annotations

import logging
import time

from ragtrail.core import env
from ragtrail.core.recorder import Recorder

log = logging.getLogger("ragtrail.progress")


def every_s() -> float:
    """Seconds between two progress lines (``RAGTRAIL_PROGRESS_S``, default 15)."""
    return env.PROGRESS_S.get()


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else (f"{value:,.3g}" if isinstance(value, float) else str(value))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 90 else f"{seconds} s"


class Progress:
    """Counts one stage's work; see the module doc. ``total`` may be ``None`` when unknown."""

    def __init__(self, stage: str, total: int | None, unit: str = "items", *, recorder: Recorder | None = None,
                 logger: logging.Logger | None = None, interval_s: float | None = None):
        self.stage, self.total, self.unit = stage, total, unit
        self.recorder, self.log = recorder, logger or log
        self.interval = every_s() if interval_s is None else interval_s
        self.done = 0
        self.steps = 0
        self.t0 = self._last = self._last_step = time.perf_counter()
        size = f"{_n(total)} {unit}" if total is not None else unit
        self.log.debug("%s: started, %s", stage, size)  # the task's own start line says it already

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.t0
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1, **figures: float) -> None:
        """Count ``n`` more units done; ``figures`` (e.g. ``batch_s=1.2``) become step metrics too."""
        now = time.perf_counter()
        self.done += n
        self.steps += 1
        # Step metrics per batch (``figures`` given) or at most one a second for item-by-item counts.
        if self.recorder is not None and (figures or now - self._last_step >= 1.0):
            self._last_step = now
            self.recorder.step(self.steps, **{f"{self.stage}_done": self.done, f"{self.stage}_per_s": self.rate(),
                                              **{f"{self.stage}_{k}": v for k, v in figures.items()}})
        if now - self._last >= self.interval and (self.total is None or self.done < self.total):
            self._last = now  # (all done: the closing line follows and says it)
            self.log.info("%s", self.line())

    def waiting(self, item: str, seconds: float) -> None:
        """One item is taking long (called about once a second meanwhile): keep the lines coming, naming it.

        At most one line per interval, e.g. ``ingest: 120 documents, 4.1 documents/s; reading docs/big.html for 45 s``.
        """
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self.log.info("%s; reading %s for %s", self.line(), item, _duration(seconds))

    def line(self) -> str:
        rate = self.rate()
        if self.total:
            pct = 100 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else None
            eta = f", ETA {_duration(left)}" if left is not None else ""
            return (f"{self.stage}: {_n(self.done)}/{_n(self.total)} {self.unit} ({pct:.0f} %), "
                    f"{rate:,.1f} {self.unit}/s{eta}")
        return f"{self.stage}: {_n(self.done)} {self.unit}, {rate:,.1f} {self.unit}/s"

    def finish(self, **counts) -> str:
        """Log and return the stage's closing line: done count, time, rate and ``counts``."""
        elapsed = time.perf_counter() - self.t0
        extra = "; ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in counts.items() if v is not None)
        line = (f"{self.stage}: {_n(self.done)} {self.unit} in {elapsed:.1f} s "
                f"({self.done / elapsed if elapsed > 0 else 0:,.1f} {self.unit}/s)" + (f"; {extra}" if extra else ""))
        self.log.info("%s", line)
        return line


def stage_label(task_id: str, map_index: int | None) -> str:
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def result_counts(result, label: str = "") -> str:
    """A task result's counts as ``"docs 40, chunks 320"`` (numbers only; a list counts its items: the split's
    shards, another task's batches to map over)."""
    if isinstance(result, list):
        unit = "shard" if label == "split" else "batch"
        return f"{len(result)} {unit}{'' if len(result) == 1 else ('es' if unit == 'batch' else 's')}"
    if isinstance(result, dict):
        return ", ".join(f"{k} {_n(v)}" for k, v in result.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool))
    return ""


def run_stage(label: str, call):
    """Run ``call()`` between a start line and an end line (its counts and time) on ``ragtrail.progress``."""
    log.info("%s: started", label)
    t0 = time.perf_counter()
    try:
        result = call()
    except BaseException as err:
        log.info("%s: failed after %.1f s: %s: %s", label, time.perf_counter() - t0, type(err).__name__, err)
        raise
    counts = result_counts(result, label)
    log.info("%s: finished in %.1f s%s", label, time.perf_counter() - t0, f" ({counts})" if counts else "")
    return result
