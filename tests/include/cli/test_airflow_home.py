"""The embedded Airflow home's SQLite DB under concurrent writers: a write waits for a busy DB, it does not fail.

`make ui` runs api-server, scheduler, dag-processor, triggerer and task processes on one SQLite file. A CI
run found the UI's ``POST /dagRuns`` answering 500 ("Database error") while the scheduler and tasks wrote:
sqlite3 gives up on a locked DB after its default 5 s. Here a real Airflow process writes (``Variable.set``)
while another connection holds the DB's write lock for longer than that.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

from ragtrail.cli.airflow_home import SQLITE_BUSY_S, airflow_env

WRITER = """
from airflow.models import Variable
from airflow.utils.session import create_session
with create_session() as session:  # connect (and import everything) before the lock is taken
    session.connection()
print("ready", flush=True)
Variable.set("ragtrail_probe", "written")
print("written", flush=True)
"""


def test_a_write_waits_for_another_writers_lock_instead_of_failing(tmp_path):
    env = {**os.environ, **airflow_env(tmp_path)}
    subprocess.run(
        [sys.executable, "-c", "from ragtrail.cli.airflow_home import prepare; prepare()"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    db = tmp_path / "airflow" / "airflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()[-3000:]
        holder.execute("BEGIN IMMEDIATE")  # another process (the scheduler, a task) is writing
        holder.execute("INSERT INTO variable (key, val, is_encrypted) VALUES ('held', 'x', 0)")
        time.sleep(12)  # well past sqlite3's default 5 s busy timeout, well within SQLITE_BUSY_S
        assert writer.poll() is None, (
            "the writer gave up while the lock was held: " + writer.stderr.read()[-3000:]
        )
        holder.execute("COMMIT")
        out, err = writer.communicate(timeout=SQLITE_BUSY_S)
    finally:
        if writer.poll() is None:
            writer.kill()
        holder.close()
    assert writer.returncode == 0 and "written" in out, err[-3000:]
    keys = {k for (k,) in sqlite3.connect(db).execute("SELECT key FROM variable")}
    assert keys == {"held", "ragtrail_probe"}
