"""Edge shards loaded once per process, each behind our own cross-process lock, handed over on request.

Qdrant Edge admits one process per shard folder: a second ``EdgeShard.load`` fails on the WAL lock, and
that failed open has been seen to break the holder's next ``flush``; a shard made without a WAL (as
:mod:`.edge` now makes them) has no such lock at all, so a second process would load it unchecked. So no process loads a shard without
first holding ``<root>/.locks/<collection>.lock`` (an ``flock``: the kernel drops it when its holder dies,
SIGKILL included). Within a process every store shares one loaded shard per folder (a registry), so two
stores in one process never lock each other out.

Hand-over: a process that finds the lock taken drops a ``<lock>.want.<pid>`` file and polls. The holder
looks for such files before each operation, and a watcher thread looks while it is idle; when one names
a live process, the holder flushes, closes the shard, unlocks, waits (briefly) for the waiter to take it,
and queues behind it. So whoever holds a shard — a writer between two upsert batches, a reader between
two queries, a store left open and idle — gives it up after the operation in flight, and pays a reload
only when someone else actually asked. No ``qdrant_edge`` import here.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ragtrail.core.heap import give_back

POLL_S = 0.01
HANDOVER_WAIT_S = 2.0  # how long a releasing holder lets a waiter take the lock before it queues again


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def waiters(lock_path: Path) -> list[Path]:
    """Want files of other live processes for this lock (a dead waiter's file is removed)."""
    out = []
    for want in lock_path.parent.glob(f"{lock_path.name}.want.*"):
        try:
            pid = int(want.name.rsplit(".", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if alive(pid):
            out.append(want)
        else:
            want.unlink(missing_ok=True)
    return out


class ShardLock:
    """An exclusive ``flock`` on ``path`` that announces a wait with a want file."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def acquire(self, timeout_s: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        want = self.path.with_name(f"{self.path.name}.want.{os.getpid()}")
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"waited {timeout_s:.0f} s for {self.path}; another ragtrail "
                                           "process holds this collection") from None
                    want.touch()
                    time.sleep(POLL_S)
        except BaseException:
            os.close(fd)
            raise
        finally:
            want.unlink(missing_ok=True)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Loaded:
    """One shard folder's state in this process: the shard (or ``None``), its lock, who uses it."""

    def __init__(self, folder: Path, lock_path: Path):
        self.folder, self.lock = folder, ShardLock(lock_path)
        self.shard = None
        self.users: set[int] = set()
        self.mutex = threading.RLock()

    def unload(self) -> None:
        if self.shard is not None:
            try:
                self.shard.flush()
            finally:
                self.shard.close()
                self.shard = None
        self.lock.release()

    def hand_over(self) -> None:
        """Another process waits: let it have the shard, and give it a moment to take the lock."""
        self.unload()
        deadline = time.monotonic() + HANDOVER_WAIT_S
        while waiters(self.lock.path) and time.monotonic() < deadline:
            time.sleep(POLL_S)


_REGISTRY: dict[str, Loaded] = {}
_REGISTRY_LOCK = threading.Lock()
_WATCHER: list[threading.Thread] = []
WATCH_S = 0.02


def _forget_after_fork() -> None:
    """A forked child must not use (nor unlock) its parent's shards: it starts with an empty registry."""
    global _REGISTRY_LOCK
    _REGISTRY.clear()
    _WATCHER.clear()
    _REGISTRY_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def _watch() -> None:
    """Hand idle shards to processes that wait for them (a busy one hands over at its next operation)."""
    while True:
        time.sleep(WATCH_S)
        with _REGISTRY_LOCK:
            loaded_now = [lo for lo in _REGISTRY.values() if lo.shard is not None]
        for loaded in loaded_now:
            if not waiters(loaded.lock.path) or not loaded.mutex.acquire(blocking=False):
                continue
            try:
                if loaded.shard is not None:
                    loaded.hand_over()
            finally:
                loaded.mutex.release()


def entry(folder: Path, lock_path: Path, user: int, shard_dir: str = "shard") -> Loaded:
    with _REGISTRY_LOCK:
        loaded = _REGISTRY.setdefault(str(folder / shard_dir), Loaded(folder, lock_path))
        loaded.users.add(user)
        if not _WATCHER:
            _WATCHER.append(threading.Thread(target=_watch, name="edge-shard-hand-over", daemon=True))
            _WATCHER[0].start()
        return loaded


@contextmanager
def using(folder: Path, lock_path: Path, user: int, load: Callable[[str], object],
          timeout_s: float, shard_dir: str = "shard") -> Iterator[object]:
    """The loaded shard ``folder/shard_dir`` for one operation (locking and loading it first if needed)."""
    loaded = entry(folder, lock_path, user, shard_dir)
    with loaded.mutex:
        if loaded.shard is not None and waiters(lock_path):
            loaded.hand_over()
        if loaded.shard is None:
            if loaded.lock.fd is None:
                loaded.lock.acquire(timeout_s)
            if not (folder / "meta.json").exists():
                loaded.lock.release()
                raise LookupError(f"collection {folder.name} does not exist")
            try:
                loaded.shard = load(str(folder / shard_dir))
            except BaseException:
                loaded.lock.release()
                raise
        yield loaded.shard


@contextmanager
def exclusive(folder: Path, lock_path: Path, user: int, timeout_s: float, shard_dir: str = "shard") -> Iterator[None]:
    """Hold the lock of ``folder/shard_dir`` with that shard unloaded in this process (to delete the folder)."""
    loaded = entry(folder, lock_path, user, shard_dir)
    with loaded.mutex:
        if loaded.shard is not None:
            loaded.unload()
        if loaded.lock.fd is None:
            loaded.lock.acquire(timeout_s)
        try:
            yield
        finally:
            loaded.lock.release()
            with _REGISTRY_LOCK:
                _REGISTRY.pop(str(folder / shard_dir), None)


def is_loaded(folder: Path, shard_dir: str = "shard") -> bool:
    """Whether this process holds ``folder/shard_dir`` loaded now."""
    with _REGISTRY_LOCK:
        loaded = _REGISTRY.get(str(folder / shard_dir))
    return loaded is not None and loaded.shard is not None


def unload(folder: Path, shard_dir: str = "shard") -> None:
    """Flush, close and unlock ``folder/shard_dir`` in this process now (the next operation loads it again):
    a writer that moves on to the next part of a collection does not keep the parts it wrote."""
    with _REGISTRY_LOCK:
        loaded = _REGISTRY.get(str(folder / shard_dir))
    if loaded is not None:
        with loaded.mutex:
            loaded.unload()
        give_back()  # what the part held goes back to the OS, not to the allocator's free lists


def detach(user: int) -> None:
    """A store closes: unload every shard no other open store of this process uses."""
    with _REGISTRY_LOCK:
        mine = [(key, lo) for key, lo in _REGISTRY.items() if user in lo.users]
    for key, loaded in mine:
        with loaded.mutex:
            loaded.users.discard(user)
            if not loaded.users:
                loaded.unload()
                with _REGISTRY_LOCK:
                    if _REGISTRY.get(key) is loaded:
                        del _REGISTRY[key]


def atomic_write_json(path: Path, text: str) -> None:
    """Replace ``path`` so a reader sees the old or the new file, never a gap or a torn one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
