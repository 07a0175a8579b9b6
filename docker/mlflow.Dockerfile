# MLflow tracking server for docker-compose.yml: PostgreSQL store, artifacts proxied to S3 (SeaweedFS).
# Also runs docker/s3_init.py (the stack's bucket set-up) with its boto3.
# Versions must equal requirements.txt (tests/test_compose.py checks it).
FROM ghcr.io/mlflow/mlflow:v3.17.2
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -c /tmp/requirements.lock psycopg2-binary==2.9.13 boto3==1.43.117
