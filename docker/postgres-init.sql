-- Runs once, on the first start of the postgres container: the MLflow tracking store's database.
CREATE DATABASE mlflow OWNER airflow;
