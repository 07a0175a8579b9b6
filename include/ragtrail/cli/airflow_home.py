"""Prepare an embedded Airflow home (SQLite, examples off, low parallelism) inside the data folder.

This module only sets environment variables and runs the DB migration on first use; it must run
before anything imports ``airflow`` (Airflow reads its configuration at import time). It is used by
the CLI and the Makefile, never by the pipeline stages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ragtrail.core import env
from ragtrail.core.settings import DAGS_FOLDER, ragtrail_home

SQLITE_BUSY_S = 60


def airflow_env(home: Path | None = None) -> dict[str, str]:
    """Environment for an embedded Airflow rooted at ``<RAGTRAIL_HOME>/airflow``.

    Tuning variables the user already set win. Locations inside the Airflow home (``AIRFLOW_HOME``,
    the SQLite DB, logs, plugins) always follow ``RAGTRAIL_HOME``, so an embedded run never touches a
    personal ``~/airflow`` nor another data folder's DB.
    """
    home = home or ragtrail_home()
    af_home = home / "airflow"
    (af_home / "plugins").mkdir(parents=True, exist_ok=True)
    owned = {
        "AIRFLOW_HOME": str(af_home),
        # The plugin is registered through an entry point; an empty folder avoids loading it twice.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(af_home / "plugins"),
        # The api-server, scheduler, dag-processor, triggerer and task processes share one SQLite file (Airflow
        # puts it in WAL mode): a writer waits up to SQLITE_BUSY_S for another's write lock instead of failing
        # after sqlite3's default 5 s ("database is locked", a 500 on the UI's trigger under load).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af_home / 'airflow.db'}?timeout={SQLITE_BUSY_S}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(af_home / "logs"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
            af_home / "simple_auth_manager_passwords.json"
        ),
        env.HOME.name: str(home),
    }
    defaults = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return {**{k: os.environ.get(k, v) for k, v in defaults.items()}, **owned}


def prepare(home: Path | None = None) -> Path:
    """Export the embedded Airflow environment into this process and migrate its DB once."""
    env = airflow_env(home)
    os.environ.update(env)
    af_home = Path(env["AIRFLOW_HOME"])
    marker = af_home / ".ragtrail-db-migrated"
    if not marker.exists() or marker.read_text() != env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]:
        # A child process keeps the migration's imports and logging out of this one.
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            env=os.environ.copy(),
            stdout=sys.stderr,
        )
        marker.write_text(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    return af_home
