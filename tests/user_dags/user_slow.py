"""A tracked DAG whose task runs long enough to be marked failed from the REST API or SIGKILLed.

The task writes its process id to ``$RAGTRAIL_HOME/slow-<run_id>.pid`` so a test can kill it.
"""

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["mlflow"])
def user_slow():
    @task
    def quick():
        return 1

    @task(retries=0)
    def slow():
        import time

        run_id = get_current_context()["ti"].run_id
        Path(os.environ["RAGTRAIL_HOME"], f"slow-{run_id}.pid").write_text(str(os.getpid()))
        time.sleep(300)

    quick() >> slow()


user_slow()
