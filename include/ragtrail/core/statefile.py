"""Where a version's source state lives between runs: a folder per collection, beside the runs' work.

``<work>/.state/<collection>/`` — the local work folder (``RAGTRAIL_WORK_DIR``), or the work store
(``RAGTRAIL_WORK_URL``) when one is configured, so that any worker finds it. The state is in **parts**: one
SQLite file per key range (the ranges the split cut the source into) and ``manifest.json`` naming the
current set (:mod:`ragtrail.stages.state_parts` says what a part holds and how a commit rewrites only the
parts a run touched). Here the folder is only fetched and committed:

- :meth:`StateFile.fetch` gives a :class:`LocalState`: the manifest, and each part file read in place (local)
  or downloaded the first time a stage asks for it (work store): an ingest shard downloads its own part(s)
  only, never the whole state.
- :meth:`StateFile.commit` puts the parts a commit wrote (each under a new name) and then swaps the manifest
  (a rename locally, one PUT in S3): a reader sees the old set or the new one, never a torn state. A part a
  commit replaced is deleted one commit later, so a reader that read the previous manifest still finds
  its parts. A run that fails before its commit leaves the previous state, which still describes what the
  index holds.

A state written before parts existed (one file, ``source_state.sqlite``) is still read; the first commit
after it writes parts and retires the old file.

Example::

    state = open_state("handbook__v1")
    local = state.fetch(work.local)          # None before the first build
    ...
    state.commit(out_folder)                 # what ragtrail.stages.state_commit.commit_state wrote
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtrail.core.workstore import _S3, _default_s3, _Fsspec, work_url

STATE_FILE = "source_state.sqlite"  # the one-file state of earlier releases (still read; retired on commit)
STATE_DIR = ".state"  # hidden: never a DAG id's folder
MANIFEST = "manifest.json"


class LocalState:
    """A state in parts as this worker sees it: its manifest, and each part here or fetched when first asked for.

    Path-like (its folder), so that it travels where a state's path did."""

    def __init__(self, folder: str | Path, manifest: dict, fetch_part: Callable[[str, Path], None] | None = None):
        self.folder, self.manifest, self._fetch = Path(folder), manifest, fetch_part
        self.fetched: list[str] = []  # the parts downloaded (tests and metrics: an ingest shard fetches its own)

    def __fspath__(self) -> str:
        return str(self.folder)

    @property
    def in_place(self) -> bool:
        """Every part is a local file already (no work store to fetch from)."""
        return self._fetch is None

    @property
    def meta(self) -> dict:
        return self.manifest.get("meta", {})

    @property
    def parts(self) -> list[dict]:
        return self.manifest["parts"]

    def part(self, entry: dict | str) -> Path:
        """The local file of one part (downloaded under a temporary name first, from a work store)."""
        name = entry if isinstance(entry, str) else entry["file"]
        path = self.folder / name
        if not path.exists() and self._fetch is not None:
            tmp = path.with_name(f"{name}.partial-{uuid.uuid4().hex[:8]}")
            try:
                self._fetch(name, tmp)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            self.fetched.append(name)
        return path


def load_local(path) -> LocalState | None:
    """``path`` as a state in parts (a :class:`LocalState`, or a folder with a manifest), else ``None``
    (a one-file state, or nothing)."""
    if isinstance(path, LocalState):
        return path
    if path and (Path(path) / MANIFEST).is_file():
        return LocalState(Path(path), json.loads((Path(path) / MANIFEST).read_text()))
    return None


class StateFile:
    """The committed state of one collection: a local folder, or a folder URL in the work store."""

    def __init__(self, location: str, backend=None):
        self.location, self._backend = location.rstrip("/"), backend

    @property
    def remote(self) -> bool:
        return self._backend is not None

    def _url(self, name: str) -> str:
        return f"{self.location}/{name}"

    def _read_manifest(self) -> dict | None:
        if not self.remote:
            path = Path(self.location) / MANIFEST
            return json.loads(path.read_text()) if path.exists() else None
        data = self._backend.read(self._url(MANIFEST))
        return None if data is None else json.loads(data)

    def fetch(self, local_dir: str | Path) -> LocalState | Path | None:
        """The committed state (``None``: nothing committed yet): a :class:`LocalState` (locally: the committed
        folder, read in place — a commit never rewrites a part, it writes new ones; from a work store: a folder
        in ``local_dir`` with the manifest, each part downloaded when first read), or the local path of a
        one-file state of an earlier release."""
        manifest = self._read_manifest()
        if manifest is not None:
            if not self.remote:
                return LocalState(Path(self.location), manifest)
            folder = Path(local_dir) / "state"
            folder.mkdir(parents=True, exist_ok=True)
            return LocalState(folder, manifest, lambda name, to: self._backend.get(self._url(name), to))
        return self._fetch_one_file(Path(local_dir))

    def _fetch_one_file(self, local_dir: Path) -> Path | None:
        if not self.remote:
            legacy = Path(self.location) / STATE_FILE
            return legacy if legacy.exists() else None
        local_dir.mkdir(parents=True, exist_ok=True)
        copy = local_dir / f"{STATE_FILE}.base"
        try:
            self._backend.get(self._url(STATE_FILE), copy)
        except Exception as err:  # absent from the store: no state yet (each backend says so its own way)
            if _absent(err):
                copy.unlink(missing_ok=True)
                return None
            raise
        return copy

    def commit(self, written: str | Path) -> str:
        """Make the state folder ``written`` (a manifest and the parts it names that this commit wrote) the
        committed state: the new parts first, the manifest last; returns where it lives."""
        written = Path(written)
        manifest = json.loads((written / MANIFEST).read_text())
        previous = self._read_manifest() or {}
        for name in manifest.get("written", []):
            self._put(written / name, name)
        self._put(written / MANIFEST, MANIFEST)
        # What the previous commit retired is named by no manifest a reader can still hold: delete it now.
        for name in previous.get("retired", []):
            self._delete(name)
        return self.location

    def _put(self, local: Path, name: str) -> None:
        if self.remote:
            self._backend.put(local, self._url(name))
            return
        target = Path(self.location) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.partial-{uuid.uuid4().hex[:8]}")
        shutil.copyfile(local, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def _delete(self, name: str) -> None:
        if self.remote:
            self._backend.delete(self._url(name))
        else:
            (Path(self.location) / name).unlink(missing_ok=True)

    def remove(self) -> None:
        """Forget the committed state (the next run reads every object)."""
        if self.remote:
            self._backend.remove(self.location)
        else:
            shutil.rmtree(self.location, ignore_errors=True)


def _absent(err: Exception) -> bool:
    response = getattr(err, "response", None)
    code = str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
    return isinstance(err, FileNotFoundError) or code in ("404", "NoSuchKey", "NotFound")


def open_state(collection: str, *, url: str | None = None, s3_client: Callable[[], Any] | None = None,
               storage_options: dict | None = None, local_root: str | Path | None = None) -> StateFile:
    """The state of ``collection``: in the work store ``url`` (default ``RAGTRAIL_WORK_URL``), else under the
    local work folder (``local_root``, default ``work_root``)."""
    from ragtrail.core.settings import load

    url = url if url is not None else work_url()
    if not url:
        root = Path(local_root) if local_root else load().work_root
        return StateFile(str(root / STATE_DIR / collection))
    backend = _S3(s3_client or _default_s3) if url.startswith("s3://") else _Fsspec(url, storage_options)
    return StateFile(f"{url.rstrip('/')}/{STATE_DIR}/{collection}", backend)
