"""The RAG kit's Airflow glue: the pipeline's task wrappers, roll-up, approval, canary, tuning, registry sync,
connections to the store and S3, the source watcher and the MLflow webhook. Needs ``ragtrail[rag]``; the
provider modules one folder up never import it (ruff TID251)."""
