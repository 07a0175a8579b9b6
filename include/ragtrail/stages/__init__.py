"""The pipeline stages: plain functions per shard that report into a Recorder (no Airflow, no MLflow)."""
