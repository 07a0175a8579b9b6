"""Static checks of the docker compose stack (no docker engine here): the file parses, has what
docs/compose.md promises, wires every Airflow container the same way, keeps secrets in .env, and its images pin the
versions of requirements.txt."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def env_vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def test_every_service_readme_names_exists(compose):
    """docs/compose.md's stack table lists only services the compose file defines, and all of them."""
    readme = (REPO / "docs" / "compose.md").read_text()
    section = readme.split("## Production stack", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.M))
    assert named and named == set(compose["services"]) - {"airflow-cli"}


def test_airflow_containers_share_connections_tracking_and_code(compose):
    """Every Airflow container gets the connections, the tracking URI, the work volume and the mounted code."""
    for name in AIRFLOW_SERVICES:
        svc = compose["services"][name]
        env = svc["environment"]
        assert '"endpoint_url": "http://minio:9000"' in env["AIRFLOW_CONN_AWS_DEFAULT"], name
        assert '"conn_type": "qdrant"' in env["AIRFLOW_CONN_QDRANT_DEFAULT"], name
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["RAGTRAIL_CPU_POOL"] == "ragtrail_cpu", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/ragtrail/dags", name
        volumes = set(svc["volumes"])
        for folder in ("dags", "plugins", "include"):
            assert f"./{folder}:/opt/ragtrail/{folder}" in volumes, (name, folder)
        assert f"ragtrail-data:{env['RAGTRAIL_HOME']}" in volumes, name
        assert svc.get("build") == "." or name == "airflow-init", name
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker" and "container_name" not in worker and "ports" not in worker
    init = compose["services"]["airflow-init"]["command"][-1]
    assert "airflow pools set ragtrail_cpu" in init and "/entrypoint airflow version" in init
    mlflow = " ".join(compose["services"]["mlflow"]["command"])
    assert "--serve-artifacts" in mlflow and "--artifacts-destination=s3://mlflow/" in mlflow
    assert "postgresql+psycopg2://" in mlflow and "local/mlflow" in compose["services"]["minio-init"]["command"][-1]
    assert all("healthcheck" in compose["services"][s] for s in
               ["postgres", "redis", "minio", "mlflow", "qdrant", *AIRFLOW_SERVICES[:-1]])


def test_secrets_come_only_from_env_file(compose):
    """No password, key or secret is written in the compose file; each one it needs is in .env.example."""
    text = (REPO / "docker-compose.yml").read_text()
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text))
    assert required <= set(example), required - set(example)
    for var in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "QDRANT_API_KEY", "AIRFLOW_JWT_SECRET",
                "_AIRFLOW_WWW_USER_PASSWORD"):
        assert var in required, var
        assert example[var] and example[var] not in text, var
    for key, value in re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|API_KEY)[A-Z_]*):\s*(.+)$", text, re.M):
        assert value.strip().startswith("${"), key


def test_images_pin_the_versions_of_requirements(compose, pins):
    """Dockerfiles and images use exactly requirements.txt's Airflow, torch, MLflow, psycopg2, boto3, Qdrant."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:(\S+)-python3\.11$", dockerfile, re.M).group(1) == pins["apache-airflow"]
    assert f"torch=={pins['torch']} --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    assert "requirements.txt" in dockerfile and re.search(r"pip install .*-e /opt/ragtrail", dockerfile)
    mlflow = (REPO / "docker" / "mlflow.Dockerfile").read_text()
    assert re.search(r"^FROM ghcr.io/mlflow/mlflow:v(\S+)$", mlflow, re.M).group(1) == pins["mlflow"]
    for pkg in ("psycopg2-binary", "boto3"):
        assert f"{pkg}=={pins[pkg]}" in mlflow, pkg
    qdrant = compose["services"]["qdrant"]["image"].split(":v")[1]
    assert qdrant.split(".")[:2] == pins["qdrant-client"].split(".")[:2]
