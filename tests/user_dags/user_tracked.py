"""A user's DAG that is not ragtrail's: one tag (``mlflow``) and every task shows up in MLflow."""

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["mlflow", "mlflow.log_returns"])
def user_tracked():
    hello = BashOperator(task_id="hello", bash_command="echo hello")

    @task(multiple_outputs=False)
    def train():
        import mlflow

        mlflow.log_metric("accuracy", 0.93)  # plain MLflow: lands in this task's own run
        return {"rows": 12, "note": "not a number"}

    @task
    def square(x: int) -> int:
        if x == 3:
            raise ValueError("three is not welcome")
        return x * x

    @task(retries=1, retry_delay=timedelta(seconds=1))
    def flaky():
        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("the first try fails")

    hello >> train()
    square.expand(x=[1, 2, 3])
    flaky()


user_tracked()
