"""Where a version's source state lives between runs: one file per collection, beside the runs' work.

``<work>/.state/<collection>/source_state.sqlite`` — the local work folder (``RAGTRAIL_WORK_DIR``), or the
work store (``RAGTRAIL_WORK_URL``) when one is configured, so that any worker finds it. The file itself
(what it holds, how it is merged) is :mod:`ragtrail.stages.sync_state`'s business; here it is only
fetched and committed whole: a commit replaces the file atomically (a temporary name and a rename
locally, one PUT in S3), so a reader sees the old state or the new one, never a torn file. A run that
fails before its commit leaves the previous state, which still describes what the index holds.

Example::

    state = open_state("handbook__v1")
    path = state.fetch(work.local)          # None before the first build
    ...
    state.commit(work.local / "source_state.sqlite")
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtrail.core.workstore import _S3, _default_s3, _Fsspec, work_url

STATE_FILE = "source_state.sqlite"
STATE_DIR = ".state"  # hidden: never a DAG id's folder


class StateFile:
    """The committed state of one collection: a local path, or a URL in the work store."""

    def __init__(self, location: str, backend=None):
        self.location, self._backend = location, backend

    @property
    def remote(self) -> bool:
        return self._backend is not None

    def fetch(self, local_dir: str | Path, writable: bool = False) -> Path | None:
        """The committed state as a local file (``None``: nothing committed yet). Locally, a read-only
        caller gets the committed file itself (a commit replaces it by rename: an open reader keeps the
        old one); a writer gets a copy in ``local_dir``."""
        local_dir = Path(local_dir)
        if not self.remote:
            committed = Path(self.location)
            if not committed.exists():
                return None
            if not writable:
                return committed
            local_dir.mkdir(parents=True, exist_ok=True)
            copy = local_dir / f"{STATE_FILE}.base"
            shutil.copyfile(committed, copy)
            return copy
        local_dir.mkdir(parents=True, exist_ok=True)
        copy = local_dir / f"{STATE_FILE}.base"
        try:
            self._backend.get(self.location, copy)
        except Exception as err:  # absent from the store: no state yet (each backend says so its own way)
            if _absent(err):
                copy.unlink(missing_ok=True)
                return None
            raise
        return copy

    def commit(self, local: str | Path) -> str:
        """Make ``local`` the committed state, whole or not at all; returns where it lives."""
        if self.remote:
            self._backend.put(Path(local), self.location)
            return self.location
        target = Path(self.location)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
        shutil.copyfile(local, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return str(target)

    def remove(self) -> None:
        """Forget the committed state (the next run reads every object)."""
        if self.remote:
            self._backend.remove(self.location.rsplit("/", 1)[0])
        else:
            Path(self.location).unlink(missing_ok=True)


def _absent(err: Exception) -> bool:
    response = getattr(err, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return isinstance(err, FileNotFoundError) or code in ("404", "NoSuchKey", "NotFound")


def open_state(collection: str, *, url: str | None = None, s3_client: Callable[[], Any] | None = None,
               storage_options: dict | None = None, local_root: str | Path | None = None) -> StateFile:
    """The state file of ``collection``: in the work store ``url`` (default ``RAGTRAIL_WORK_URL``), else under
    the local work folder (``local_root``, default ``work_root``)."""
    from ragtrail.core.settings import load

    url = url if url is not None else work_url()
    if not url:
        root = Path(local_root) if local_root else load().work_root
        return StateFile(str(root / STATE_DIR / collection / STATE_FILE))
    backend = _S3(s3_client or _default_s3) if url.startswith("s3://") else _Fsspec(url, storage_options)
    return StateFile(f"{url.rstrip('/')}/{STATE_DIR}/{collection}/{STATE_FILE}", backend)
