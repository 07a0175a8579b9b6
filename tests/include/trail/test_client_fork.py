"""A forked process (a LocalExecutor task forked from its parent) never reuses its parent's SQLite connections."""

from __future__ import annotations

import os

from ragtrail.trail.client import get_client


def test_a_forked_child_gets_its_own_connections_and_can_write(tmp_path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = get_client(uri)
    exp = client.create_experiment("fork-test")
    parent_pool = id(SqlAlchemyStore._engine_map[uri].pool)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, write through the same cached client, exit without pytest's teardown
        ok = id(SqlAlchemyStore._engine_map[uri].pool) != parent_pool
        try:
            client.create_run(exp, run_name="from-the-child")
        except Exception:
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert [r.info.run_name for r in client.search_runs([exp])] == ["from-the-child"]
