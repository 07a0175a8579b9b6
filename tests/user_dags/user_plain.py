"""A user's DAG without the tag: it must leave no trace in MLflow."""

from datetime import datetime

from airflow.sdk import dag, task


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["plain"])
def user_plain():
    @task(multiple_outputs=False)
    def work():
        return {"rows": 1}

    work()


user_plain()
