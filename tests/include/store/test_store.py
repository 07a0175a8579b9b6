"""The Qdrant store's own behaviour: batching and retries on a server, payload indexes, the local lock.

No Qdrant server runs here, so the server-only paths drive a real in-memory client wrapped to fail
the way a server does (connection refused, 503, 400) — the one place a fake stands in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from ragtrail.core.locks import file_lock
from ragtrail.store import Point, StoreSettings
from ragtrail.store.qdrant import QdrantStore

SERVER = StoreSettings(url="http://qdrant.invalid:6333", api_key="k")


class FlakyServer:
    """A real in-memory client whose upserts fail ``failures`` times first, recording every call."""

    def __init__(self, failures: list[Exception]):
        self.real, self.failures, self.calls = QdrantClient(":memory:"), list(failures), []

    def upsert(self, name, points, wait):
        self.calls.append(("upsert", len(points)))
        if self.failures:
            raise self.failures.pop(0)
        return self.real.upsert(name, points=points, wait=wait)

    def create_payload_index(self, name, field, field_schema, wait):
        self.calls.append(("index", field, str(field_schema)))

    def __getattr__(self, attr):
        return getattr(self.real, attr)


def points(n: int) -> list[Point]:
    return [Point(id=i, vector=[1.0, float(i), 0.5], payload={"doc_id": f"d{i % 3}", "chunk_hash": f"h{i}"})
            for i in range(n)]


def unexpected(status: int) -> UnexpectedResponse:
    return UnexpectedResponse(status_code=status, reason_phrase="x", content=b"", headers=None)


def test_server_upserts_in_batches_and_retries_transient_errors():
    """10 points in batches of 4 = 3 calls; a refused connection and a 503 are retried; all points land once."""
    client = FlakyServer([ResponseHandlingException(ConnectionError("refused")), unexpected(503)])
    store = QdrantStore(client, SERVER, batch=4, retries=3, backoff_s=0)
    store.create("c", 3, {})
    store.upsert("c", points(10))
    assert [c for c in client.calls if c[0] == "upsert"] == [("upsert", 4)] * 3 + [("upsert", 4), ("upsert", 2)]
    assert store.count("c") == 10 and store.upload_calls == 3


def test_server_gives_up_after_its_retries_and_never_retries_a_bad_request():
    store = QdrantStore(FlakyServer([unexpected(503)] * 3), SERVER, batch=4, retries=2, backoff_s=0)
    store.create("c", 3, {})
    with pytest.raises(UnexpectedResponse):
        store.upsert("c", points(2))
    bad = FlakyServer([unexpected(400)])
    store = QdrantStore(bad, SERVER, retries=5, backoff_s=0)
    store.create("c", 3, {})
    with pytest.raises(UnexpectedResponse):
        store.upsert("c", points(2))
    assert [c for c in bad.calls if c[0] == "upsert"] == [("upsert", 2)]


def test_local_mode_does_not_retry():
    store = QdrantStore(FlakyServer([ResponseHandlingException(ConnectionError("x"))]), StoreSettings(memory=True))
    store.create("c", 3, {})
    with pytest.raises(ResponseHandlingException):
        store.upsert("c", points(1))


def test_payload_indexes_on_a_server_only():
    """A server collection gets keyword indexes on doc_id and chunk_hash (the plan and index filters)."""
    server = FlakyServer([])
    QdrantStore(server, SERVER).create("c", 3, {})
    assert [c for c in server.calls if c[0] == "index"] == [("index", "doc_id", "keyword"), ("index", "chunk_hash", "keyword")]
    local = FlakyServer([])
    QdrantStore(local, StoreSettings(memory=True)).create("c", 3, {})
    assert local.calls == []


def test_filtered_scroll_and_query():
    with_store = QdrantStore(QdrantClient(":memory:"), StoreSettings(memory=True))
    with_store.create("c", 3, {"embedder": "e"})
    with_store.upsert("c", points(6))
    assert sorted(p.id for p in with_store.scroll("c", ["doc_id"], where=("doc_id", ["d1"]))) == [1, 4]
    assert with_store.query("c", [1.0, 5.0, 0.5], 1, ["doc_id"])[0].payload == {"doc_id": "d2"}
    assert with_store.metadata("c") == {"embedder": "e"} and with_store.dimension("c") == 3


def test_lock_waits_then_times_out_and_frees_when_its_holder_is_killed(tmp_path):
    """The flock is exclusive even within one process, and the kernel frees it when the holder is SIGKILLed."""
    lock = tmp_path / ".store.lock"
    with file_lock(lock), pytest.raises(TimeoutError, match="another ragtrail process holds it"):
        with file_lock(lock, timeout_s=0.3):
            pass
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ragtrail.core.locks import file_lock\n"
        f"with file_lock({str(lock)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError):
            with file_lock(lock, timeout_s=0.3):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with file_lock(lock, timeout_s=5):  # raises TimeoutError if the dead holder's lock had stayed
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.stdout.close()


class IndexingServer(FlakyServer):
    """The in-memory client standing in for a server that reports YELLOW (optimizing) ``yellow`` times."""

    def __init__(self, yellow: int):
        super().__init__([])
        self.yellow = yellow

    def create_collection(self, name, **kw):
        optimizers = kw.pop("optimizers_config", None)  # the in-memory client takes none
        self.calls.append(("create", optimizers.indexing_threshold if optimizers else None))
        return self.real.create_collection(name, **kw)

    def update_collection(self, name, optimizers_config):
        self.calls.append(("update", optimizers_config.indexing_threshold))

    def get_collection(self, name):
        info = self.real.get_collection(name)
        status = models.CollectionStatus.YELLOW if self.yellow else models.CollectionStatus.GREEN
        self.yellow = max(0, self.yellow - 1)
        self.calls.append(("status", status.value))
        return info.model_copy(update={"status": status})


def test_a_server_bulk_load_indexes_once_at_the_end_and_waits_for_green():
    """Qdrant's bulk-upload guide: indexing off while the version is written, on again at finish, and the
    version judged (its alias moved) only once the collection is green."""
    server = IndexingServer(yellow=2)
    store = QdrantStore(server, SERVER, batch=4, backoff_s=0)
    store.create("c", 3, {})
    store.upsert("c", points(10))
    store.finish("c", poll_s=0)
    assert server.calls[0] == ("create", 0)
    assert [c for c in server.calls if c[0] in ("update", "status")] == [
        ("update", 20_000), ("status", "yellow"), ("status", "yellow"), ("status", "green")]


def test_a_server_that_stays_yellow_is_waited_for_at_most_the_setting(monkeypatch, caplog):
    monkeypatch.setenv("RAGTRAIL_INDEX_WAIT_S", "0")
    server = IndexingServer(yellow=99)
    store = QdrantStore(server, SERVER, backoff_s=0)
    store.create("c", 3, {})
    store.finish("c", poll_s=0)
    assert [c for c in server.calls if c[0] == "status"] == [("status", "yellow")]
    assert "collection c is yellow after indexing was turned on" in caplog.text


def test_local_mode_creates_without_optimizer_settings_and_finishes_at_once():
    local = IndexingServer(yellow=5)
    store = QdrantStore(local, StoreSettings(memory=True))
    store.create("c", 3, {})
    store.finish("c")
    assert local.calls == [("create", None)]
