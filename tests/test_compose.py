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
    """Every Airflow container gets the connections, the tracking URI, the work store and the mounted code,
    and no volume: workers share no disk (stage files go through the work store in S3)."""
    for name in AIRFLOW_SERVICES:
        svc = compose["services"][name]
        env = svc["environment"]
        assert '"endpoint_url": "http://seaweedfs:8333"' in env["AIRFLOW_CONN_AWS_DEFAULT"], name
        assert '"conn_type": "qdrant"' in env["AIRFLOW_CONN_QDRANT_DEFAULT"], name
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", name
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["RAGTRAIL_CPU_POOL"] == "ragtrail_cpu", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/ragtrail/dags", name
        assert env["RAGTRAIL_WORK_URL"].startswith("s3://") and env["RAGTRAIL_WORK_CONN_ID"] == "aws_default", name
        assert "RAGTRAIL_STORE_QUEUE" not in env, name  # a Qdrant server: store tasks run on any worker
        volumes = set(svc["volumes"])
        for folder in ("dags", "plugins", "include"):
            assert f"./{folder}:/opt/ragtrail/{folder}" in volumes, (name, folder)
        named = {v.split(":")[0] for v in volumes if not v.startswith((".", "$"))}
        assert not named, (name, named)  # no named volume: nothing a second host could not have
        assert svc.get("build") == "." or name == "airflow-init", name
    worker = compose["services"]["airflow-worker"]
    assert worker["command"] == "celery worker" and "container_name" not in worker and "ports" not in worker
    init = compose["services"]["airflow-init"]["command"][-1]
    assert "airflow pools set ragtrail_cpu" in init and "/entrypoint airflow version" in init
    mlflow = " ".join(compose["services"]["mlflow"]["command"])
    assert "--serve-artifacts" in mlflow and "--artifacts-destination=s3://mlflow/" in mlflow
    assert "postgresql+psycopg2://" in mlflow
    assert all("healthcheck" in compose["services"][s] for s in
               ["postgres", "redis", "seaweedfs", "mlflow", "qdrant", "retriever", *AIRFLOW_SERVICES[:-1]])


def test_s3_server_buckets_and_clients_agree(compose):
    """No MinIO: the S3 server is SeaweedFS; s3-init creates every bucket a client uses (MLflow artifacts,
    sources, the work store) and every S3 client points at that server with the keys of .env."""
    services = compose["services"]
    text = (REPO / "docker-compose.yml").read_text()
    assert "minio" not in text.lower()
    server = services["seaweedfs"]
    assert server["image"].startswith("chrislusf/seaweedfs:") and "-s3" in server["command"]
    keys = {"AWS_ACCESS_KEY_ID": "${S3_ACCESS_KEY:?set in .env}", "AWS_SECRET_ACCESS_KEY": "${S3_SECRET_KEY:?set in .env}"}
    for name in ("seaweedfs", "s3-init", "mlflow"):
        assert {k: services[name]["environment"][k] for k in keys} == keys, name
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert services["s3-init"]["environment"]["S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    init = services["s3-init"]
    assert init["command"][:2] == ["python", "/opt/s3_init.py"]
    assert "./docker/s3_init.py:/opt/s3_init.py:ro" in init["volumes"]
    work_bucket = services["airflow-worker"]["environment"]["RAGTRAIL_WORK_URL"].removeprefix("s3://").split("/")[0]
    assert {"mlflow", "documents", work_bucket} <= set(init["command"][2:])
    for name in [*AIRFLOW_SERVICES, "mlflow", "retriever"]:
        assert services[name]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully", name


def test_every_qdrant_consumer_reaches_the_one_server_with_the_key(compose):
    """Tasks (qdrant_default), CLI, /ragtrail/health and the served model (RAGTRAIL_QDRANT_URL/_API_KEY,
    read by ragtrail.store.resolve_store) all reach the qdrant service with the API key of .env."""
    import json

    from ragtrail.store import resolve_store

    services = compose["services"]
    key = "${QDRANT_API_KEY:?set in .env}"
    assert services["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == key
    for name in [*AIRFLOW_SERVICES, "retriever"]:
        env = services[name]["environment"]
        assert env["RAGTRAIL_QDRANT_URL"] == "http://qdrant:6333" and env["RAGTRAIL_QDRANT_API_KEY"] == key, name
        conn = json.loads(env["AIRFLOW_CONN_QDRANT_DEFAULT"])
        assert (conn["host"], conn["port"], conn["password"]) == ("qdrant", 6333, key), name
        resolved = resolve_store(env={"RAGTRAIL_QDRANT_URL": env["RAGTRAIL_QDRANT_URL"], "RAGTRAIL_QDRANT_API_KEY": "k"})
        assert (resolved.mode, resolved.url, resolved.api_key) == ("server", "http://qdrant:6333", "k"), name
    serve = " ".join(services["retriever"]["command"])
    assert "mlflow models serve" in serve and "--env-manager local" in serve and "@production" in serve
    assert services["retriever"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_every_image_is_pinned_and_its_origin_documented(compose):
    """No `latest` and no floating major tag: third-party images name a release (x.y or x.y.z), ours the
    project's or MLflow's version; docs/compose.md names every third-party image with its tag."""
    doc = (REPO / "docs" / "compose.md").read_text()
    for name, svc in compose["services"].items():
        image = svc.get("image") or ""
        assert image, name
        repo, _, tag = image.rpartition(":")
        tag = tag.rstrip("}")
        assert repo and tag and tag != "latest" and "latest" not in image, (name, image)
        if "build" not in svc and not svc.get("<<"):
            assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), (name, image)
            assert f"`{image}`" in doc, (name, image)
    for dockerfile in ("Dockerfile", "docker/mlflow.Dockerfile"):
        base = re.search(r"^FROM (\S+)$", (REPO / dockerfile).read_text(), re.M).group(1)
        assert f"`{base}`" in doc, (dockerfile, base)


def test_s3_init_creates_buckets_idempotently(s3_server, monkeypatch):
    """docker/s3_init.py (the stack's bucket set-up, boto3 instead of MinIO's client) against a real S3 API."""
    import importlib.util

    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    spec = importlib.util.spec_from_file_location("s3_init", REPO / "docker" / "s3_init.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    buckets = ["compose-mlflow", "compose-work"]
    assert mod.main(buckets) == 0 and mod.main(buckets) == 0  # the second start finds them
    assert set(buckets) <= {b["Name"] for b in s3_server.client.list_buckets()["Buckets"]}


def test_secrets_come_only_from_env_file(compose):
    """No password, key or secret is written in the compose file; each one it needs is in .env.example."""
    text = (REPO / "docker-compose.yml").read_text()
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text))
    assert required <= set(example), required - set(example)
    for var in ("POSTGRES_PASSWORD", "S3_SECRET_KEY", "QDRANT_API_KEY", "AIRFLOW_JWT_SECRET",
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
