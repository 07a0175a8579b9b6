# MLflow tracking server for docker-compose.yml: PostgreSQL store, artifacts proxied to MinIO (S3).
# Versions must equal requirements.txt (tests/test_compose.py checks it).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.8
