"""The work store: where a run's tasks hand files to each other (parquet batches, ``.npy`` vectors, the plan).

Default (``RAGTRAIL_WORK_URL`` unset): the data folder's ``work/`` (``RAGTRAIL_WORK_DIR``). Stages read
and write it in place, as on one machine (or a shared POSIX mount). With ``RAGTRAIL_WORK_URL`` set to
an object-store URL (``s3://bucket/prefix``, or any other fsspec URL) each task works in a local folder
of its own worker: the edge **fetches** the files a task reads from the store and **publishes** the
files it wrote, then **releases** the local copies. Workers then share no disk at all.

The stages never see the store: they keep taking and returning local paths. Only values under keys
ending in ``_path`` of a task's result are translated (local path ↔ store URL), so XCom keeps carrying
the same small dicts of paths and counts. Each published file appears whole or not at all: an S3 PUT
is atomic, a local copy is written under a temporary name and renamed. ``RunWork.remove`` deletes a
run's files once it succeeded.

S3 is spoken through a boto3 client (the Airflow edge passes the ``aws_default`` connection's client,
as for S3 sources); other URLs go through ``fsspec`` with ``storage_options``.

Example::

    work = open_run("rag_ingest", run_id, url="s3://work/runs", s3_client=lambda: boto3.client("s3"))
    docs = work.fetch(docs_xcom)               # {"docs_path": "<local copy>", ...}
    out = chunk_documents(docs["docs_path"], work.local, ...)
    xcom = work.publish(out)                   # {"chunks_path": "s3://work/runs/.../chunks_00000.parquet"}
    work.release()
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtrail.core import env as settings_env

PLAN_FILE = "plan.json"  # the plan stage's file (ragtrail.stages.plan.PLAN_FILE); kept here to stay import-light


def work_url(env=None) -> str | None:
    """The configured work store URL, or ``None`` for the local work folder."""
    url = (settings_env.WORK_URL.get(env) or "").strip().rstrip("/")
    return url if "://" in url and not url.startswith("file://") else None


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in run_id)


class _S3:
    """put/get/read/remove on ``s3://bucket/key`` with a boto3 client."""

    def __init__(self, client_factory: Callable[[], Any]):
        self._factory, self._client = client_factory, None

    @property
    def client(self):
        if self._client is None:
            self._client = self._factory()
        return self._client

    @staticmethod
    def _split(url: str) -> tuple[str, str]:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return bucket, key

    def put(self, local: Path, url: str) -> None:
        self.client.upload_file(str(local), *self._split(url))  # a single PUT (or a completed multipart upload)

    def put_bytes(self, data: bytes, url: str) -> None:
        bucket, key = self._split(url)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(self, url: str, local: Path) -> None:
        self.client.download_file(*self._split(url), str(local))

    def read(self, url: str) -> bytes | None:
        bucket, key = self._split(url)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def delete(self, url: str) -> None:
        """Delete one object (absent: nothing to do)."""
        bucket, key = self._split(url)
        self.client.delete_object(Bucket=bucket, Key=key)

    def remove(self, url: str) -> int:
        bucket, prefix = self._split(url.rstrip("/") + "/")
        removed = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                removed += len(keys)
        return removed


class _Fsspec:
    """The same four operations on any fsspec URL (``gs://``, ``az://``, ``memory://``…)."""

    def __init__(self, url: str, storage_options: dict | None):
        import fsspec

        self.fs = fsspec.core.url_to_fs(url, **(storage_options or {}))[0]

    def put(self, local: Path, url: str) -> None:
        tmp = f"{url}.partial-{uuid.uuid4().hex[:8]}"
        self.fs.put_file(str(local), tmp)
        self.fs.mv(tmp, url)

    def put_bytes(self, data: bytes, url: str) -> None:
        tmp = f"{url}.partial-{uuid.uuid4().hex[:8]}"
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, url)

    def get(self, url: str, local: Path) -> None:
        self.fs.get_file(url, str(local))

    def read(self, url: str) -> bytes | None:
        return self.fs.cat_file(url) if self.fs.exists(url) else None

    def delete(self, url: str) -> None:
        if self.fs.exists(url):
            self.fs.rm_file(url)

    def remove(self, url: str) -> int:
        if not self.fs.exists(url):
            return 0
        n = len(self.fs.find(url))
        self.fs.rm(url, recursive=True)
        return n


class RunWork:
    """One run's work: its local folder on this worker and, with a store, its folder in the store."""

    def __init__(self, local: Path, url: str | None = None, backend=None):
        self.local, self.url, self._backend = Path(local), url, backend
        self._fetched: dict[str, str] = {}  # local copy -> its URL: never uploaded again
        self.local.mkdir(parents=True, exist_ok=True)

    @property
    def remote(self) -> bool:
        return self.url is not None

    def _url_of(self, path: Path) -> str:
        return f"{self.url}/{path.resolve().relative_to(self.local.resolve()).as_posix()}"

    def _local_of(self, url: str) -> Path:
        return self.local / url.removeprefix(self.url + "/")

    def publish_file(self, path: str | Path) -> str:
        """Upload one local file of this run; return its store URL (local mode: the path itself)."""
        if not self.remote or "://" in str(path):
            return str(path)
        if str(path) in self._fetched:
            return self._fetched[str(path)]
        url = self._url_of(Path(path))
        self._backend.put(Path(path), url)
        return url

    def fetch_file(self, url: str) -> Path:
        """A local copy of one store file (local mode: the path itself); written under a temporary name."""
        if not self.remote or not str(url).startswith(self.url + "/"):
            return Path(url)
        local = self._local_of(url)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{local.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            self._backend.get(url, tmp)
            tmp.replace(local)
        finally:
            tmp.unlink(missing_ok=True)
        self._fetched[str(local)] = url
        return local

    def publish(self, value):
        """``value`` (a stage's result) with every local ``*_path`` uploaded and replaced by its URL."""
        return _map_paths(value, self.publish_file) if self.remote else value

    def fetch(self, value):
        """``value`` (an upstream XCom) with every store ``*_path`` downloaded and replaced by the local copy."""
        return _map_paths(value, lambda url: str(self.fetch_file(url))) if self.remote else value

    def publish_plan(self, plan: dict) -> dict:
        """Upload the plan stage's files and its ``plan.json`` (with store URLs); return the published plan."""
        if not self.remote:
            return plan
        published = self.publish(plan)
        self._backend.put_bytes(json.dumps(published).encode(), f"{self.url}/{PLAN_FILE}")
        return published

    def read_plan(self) -> dict | None:
        """The run's plan as stored (``None`` when the plan task never completed)."""
        if not self.remote:
            path = self.local / PLAN_FILE
            return json.loads(path.read_text()) if path.exists() else None
        data = self._backend.read(f"{self.url}/{PLAN_FILE}")
        return None if data is None else json.loads(data)

    def fetch_plan(self) -> None:
        """Make ``plan.json`` readable in the local folder (``ragtrail.stages.plan.read_plan``), with local copies
        of its seeded state, deleted-documents and state-delta files; batch files stay in the store (chunk fetches them)."""
        if not self.remote:
            return
        plan = self.read_plan()
        if plan is None:
            return  # read_plan in the stage then fails with its clear message
        for key in ("held_path", "deleted_path", "delta_path", "changed_path"):
            if plan.get(key):
                plan[key] = str(self.fetch_file(plan[key]))
        tmp = self.local / f"{PLAN_FILE}.partial"
        tmp.write_text(json.dumps(plan))
        tmp.replace(self.local / PLAN_FILE)

    def fetch_named(self, name: str) -> Path:
        """A local copy of the run's file ``name`` (e.g. ``split.json``), published by an earlier task."""
        return self.fetch_file(f"{self.url}/{name}") if self.remote else self.local / name

    def release(self) -> None:
        """Drop this worker's local copies (a store keeps the run's files; local mode keeps everything)."""
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)

    def remove(self) -> int:
        """Delete the run's files (store and local folder) once the run succeeded; the number of store objects."""
        removed = self._backend.remove(self.url) if self.remote else 0
        shutil.rmtree(self.local, ignore_errors=True)
        return removed


def _map_paths(value, fn):
    if isinstance(value, dict):
        return {k: fn(v) if k.endswith("_path") and isinstance(v, str) and v else _map_paths(v, fn)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_paths(v, fn) for v in value]
    return value


def open_run(dag_id: str, run_id: str, *, url: str | None = None, s3_client: Callable[[], Any] | None = None,
             storage_options: dict | None = None, local_root: str | Path | None = None) -> RunWork:
    """The work of one run. ``url``: the store (default ``RAGTRAIL_WORK_URL``; ``None``: local only).

    ``s3_client``: a factory of the boto3 client for ``s3://`` stores (default: boto3's own chain);
    ``storage_options``: for other fsspec URLs. ``local_root``: this worker's folder (default ``work_root``).
    With a store the local folder is unique per call, so two tasks of one run on one worker never
    share local copies.
    """
    from ragtrail.core.settings import load

    url = url if url is not None else work_url()
    root = Path(local_root) if local_root else load().work_root
    if not url:
        return RunWork(root / dag_id / _safe(run_id))
    if url.startswith("s3://"):
        backend = _S3(s3_client or _default_s3)
    else:
        backend = _Fsspec(url, storage_options)
    local = root / ".tasks" / f"{dag_id}-{_safe(run_id)}-{uuid.uuid4().hex[:8]}"
    return RunWork(local, f"{url.rstrip('/')}/{dag_id}/{_safe(run_id)}", backend)


def _default_s3():
    import boto3

    return boto3.client("s3", endpoint_url=settings_env.WORK_ENDPOINT_URL.get())
