"""What a stage reports: params, metrics, tags and artifacts, collected without any tracking backend.

Stages write to a :class:`Recorder`; whoever runs the stage decides where it goes. Under Airflow the
tracking operator flushes it to the task's MLflow run in a few batched calls; in a notebook it is a
plain object to inspect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Recorder:
    """Collects one stage's params, metrics, tags and artifacts in memory.

    Example::

        rec = Recorder()
        chunk_documents(docs, workdir, recorder=rec)
        rec.metrics["chunk_count"]
    """

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    files: list[tuple[Path, str | None]] = field(default_factory=list)
    # files every map index of a mapped task logs (of the others only map index 0's: a sample), e.g. a shard's
    # quarantine list: what bad input a shard met is never left out of the trail
    every_map_index: set[Path] = field(default_factory=set)
    dicts: dict[str, Any] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (key, value, step, unix ms): per-batch figures, logged as MLflow step metrics (a curve per key)
    steps: list[tuple[str, float, int, int]] = field(default_factory=list)
    # at most this many distinct steps are kept (progress steps capped per task: past it every other step is
    # dropped and only every ``2**k``-th step is recorded, so a curve keeps its shape at any batch count)
    max_steps: int = 200
    _stride: int = field(default=1, repr=False)
    _step_ids: set = field(default_factory=set, repr=False)
    # run by close(), once whoever ran the stage has logged (or dropped) the above: e.g. remove the files
    after_logging: list = field(default_factory=list, repr=False)

    def param(self, **values: Any) -> None:
        """Record configuration values (stringified; set once per run)."""
        self.params.update({k: _to_param(v) for k, v in values.items() if v is not None})

    def metric(self, **values: float | int) -> None:
        """Record numeric results; the last value for a key wins."""
        for key, value in values.items():
            if value is not None:
                self.metrics[key] = float(value)

    def step(self, step: int, **values: float | int) -> None:
        """Record per-batch figures at ``step`` (e.g. texts embedded so far), in order; at most ``max_steps``
        distinct steps are kept, evenly spread (see ``max_steps``)."""
        import time

        step = int(step)
        if step % self._stride:
            return
        now = int(time.time() * 1000)
        self.steps.extend((k, float(v), step, now) for k, v in values.items() if v is not None)
        self._step_ids.add(step)
        while len(self._step_ids) > self.max_steps:  # thin out: keep every other recorded step
            self._stride *= 2
            self._step_ids = {s for s in self._step_ids if s % self._stride == 0}
            self.steps = [row for row in self.steps if row[2] % self._stride == 0]

    def close(self) -> None:
        """Run the ``after_logging`` callbacks (each once; a failing one does not stop the others)."""
        import logging

        while self.after_logging:
            try:
                self.after_logging.pop(0)()
            except Exception as err:  # a clean-up must never turn a finished stage into a failure
                logging.getLogger(__name__).warning("clean-up after logging failed: %s", err)

    def tag(self, **values: Any) -> None:
        self.tags.update({k: str(v) for k, v in values.items() if v is not None})

    def artifact(self, path: str | Path, artifact_path: str | None = None, *, every_map_index: bool = False) -> None:
        """Attach a file that already exists (e.g. a manifest in the work folder). A mapped task's map indexes
        share one run, which keeps map index 0's files only, unless ``every_map_index``."""
        self.files.append((Path(path), artifact_path))
        if every_map_index:
            self.every_map_index.add(Path(path))

    def json(self, name: str, obj: Any) -> None:
        """Attach a JSON-serialisable object as artifact ``name`` (e.g. ``"chunk_sample.json"``)."""
        self.dicts[name] = obj

    def table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Attach rows of flat dicts as a table artifact ``name`` (e.g. ``"eval/per_query.json"``)."""
        self.tables[name] = list(rows)

    def dataset(self, *, name: str, source: str, digest: str, profile: dict[str, Any] | None = None) -> None:
        """Declare the data this stage read (logged as an MLflow dataset input)."""
        self.datasets.append({"name": name, "source": source, "digest": digest, "profile": profile or {}})


def _to_param(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
