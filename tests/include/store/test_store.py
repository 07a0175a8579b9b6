"""The Qdrant store's own behaviour: batching and retries on a server, payload indexes, the local lock.

No Qdrant server runs here. Server upserts drive the real qdrant-client (its REST uploader and worker
processes) against a fake REST endpoint that fails the way a server does (503, 500); the other
server-only paths drive a real in-memory client wrapped to record calls — the only places a fake stands in.
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


class FakeQdrantHttp:
    """A stand-in for a Qdrant server's REST API (the one fake): it answers qdrant-client's version check
    and point upserts, failing the first ``failures`` upserts with the given status, and keeps every
    point id it was sent. The client talking to it, its uploader and its worker processes are real."""

    def __init__(self, failures: list[int]):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self
        self.failures, self.requests, self.ids, self.lock = list(failures), [], [], threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._reply(200, {"title": "qdrant - fake", "version": "1.20.0"})

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append((self.path, len(body["points"]), self.headers.get("api-key")))
                    status = fake.failures.pop(0) if fake.failures else 200
                    if status == 200:
                        fake.ids += [p["id"] for p in body["points"]]
                if status != 200:
                    self._reply(status, {"status": {"error": "fake failure"}, "time": 0})
                else:
                    self._reply(200, {"result": {"operation_id": 1, "status": "completed"}, "status": "ok", "time": 0})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_http():
    servers = []

    def start(failures=()):
        servers.append(FakeQdrantHttp(list(failures)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _server_store(fake, **kw) -> QdrantStore:
    from ragtrail.store.qdrant import connect

    settings = StoreSettings(url=fake.url, api_key="k", verify=True)
    store = QdrantStore(connect(settings), settings, **kw)
    store._named["c"] = False  # the fake has no collection API: collection "c" holds one unnamed dense vector
    return store


def test_server_upserts_go_through_upload_points_in_batches_and_its_retries(fake_http):
    """10 points in batches of 4: three PUTs with wait=true; a 503 and a 500 are retried by qdrant-client's
    own uploader; every point lands once; the API key goes with each request."""
    fake = fake_http([503, 500])
    store = _server_store(fake, batch=4, retries=3)
    store.upsert("c", points(10))
    assert [r[1] for r in fake.requests] == [4, 4, 4, 4, 2]  # the first batch failed twice, then landed
    assert all(r[0] == "/collections/c/points?wait=true" and r[2] == "k" for r in fake.requests)
    assert sorted(fake.ids) == list(range(10)) and store.upload_calls == 3


def test_server_upserts_back_off_on_transient_errors_and_give_up_after_both_retry_rounds(fake_http):
    """The uploader retries a batch at once (3 tries with retries=2); a transient error that outlasts them
    repeats the call after a backoff (3 calls): 9 requests, then the error. A bad request is not repeated."""
    fake = fake_http([503] * 9)
    store = _server_store(fake, batch=4, retries=2, backoff_s=0)
    with pytest.raises(UnexpectedResponse):
        store.upsert("c", points(2))
    assert [r[1] for r in fake.requests] == [2] * 9 and fake.ids == []
    bad = fake_http([400] * 3)
    with pytest.raises(UnexpectedResponse):
        _server_store(bad, batch=4, retries=2, backoff_s=0).upsert("c", points(2))
    assert len(bad.requests) == 3


def test_server_upserts_of_many_batches_use_parallel_workers(fake_http):
    """Parallel worker processes (qdrant-client's pool) when there are at least two batches per worker."""
    fake = fake_http()
    store = _server_store(fake, batch=3, retries=1, parallel=2)
    store.upsert("c", points(20))  # 7 batches: two workers
    assert sorted(fake.ids) == list(range(20)) and sorted(r[1] for r in fake.requests) == [2] + [3] * 6
    assert store.upload_calls == 7


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
