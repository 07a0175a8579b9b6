"""The products file: validated entries, stable ids, and the one rule that names experiments."""

from __future__ import annotations

import uuid

import pytest

from ragtrail.core.products import (
    ProductsFileError,
    adhoc_id,
    artifact_location,
    experiment_name,
    load_products,
)
from ragtrail.core.settings import DEFAULT_CHUNK_SIZE

GOOD = """
products:
  - id: 0f5c7a2e-9b1d-4c3e-8a6f-1d2e3f4a5b6c
    name: docs
    source: corpus
    schedule: "0 3 * * *"
    version: v7
    chunking: {chunk_size: 120, chunk_overlap: 16}
    embedder: {name: all-MiniLM-L6-v2, batch_size: 32}
    artifact_location: s3://bucket/trail/docs
  - name: notes
    source: s3://bucket/notes/
    embedder: all-MiniLM-L6-v2
"""


def test_products_file_is_read_with_defaults(tmp_path):
    """Relative sources resolve next to the file; missing fields take the pipeline defaults; ids fall back
    to the ad-hoc id of the name."""
    path = tmp_path / "products.yml"
    path.write_text(GOOD)
    docs, notes = load_products(path)
    assert docs.source == str((tmp_path / "corpus").resolve()) and docs.schedule == "0 3 * * *"
    assert (docs.version, docs.chunk_size, docs.chunk_overlap, docs.batch_size) == ("v7", 120, 16, 32)
    assert docs.dag_id == "rag_ingest__docs" and docs.conf()["product"] == "docs"
    assert notes.source == "s3://bucket/notes/" and notes.schedule is None and notes.version == "v1"
    assert notes.chunk_size == DEFAULT_CHUNK_SIZE and notes.id == adhoc_id("notes")


@pytest.mark.parametrize("entry, message", [
    ("- {name: 'bad name', source: x}", "name must match"),
    ("- {name: a__b, source: x}", "name must match"),
    ("- {name: ok, source: x, chunking: {chunk_size: 9999}}", "chunk_size must be a whole number from 16 to 510"),
    ("- {name: ok, source: x, chunking: {chunk_size: '200'}}", "chunk_size must be a whole number"),
    ("- {name: ok}", "source is required"),
    ("- {name: ok, source: x, colour: red}", "unknown key(s) ['colour']"),
    ("- {name: ok, source: x, id: short}", "id must be 8-64"),
    ("- {name: ok, source: x}\n  - {name: ok, source: y}", "two products share the name 'ok'"),
    ("- [not, a, mapping]", "expected a mapping"),
])
def test_bad_entries_name_the_file_entry_and_field(tmp_path, entry, message):
    path = tmp_path / "products.yml"
    path.write_text("products:\n  " + entry + "\n")
    with pytest.raises(ProductsFileError) as err:
        load_products(path)
    assert message in str(err.value) and str(path.resolve()) in str(err.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "products.yml"
    path.write_text("products: [unclosed")
    with pytest.raises(ProductsFileError, match="not valid YAML"):
        load_products(path)
    assert load_products(tmp_path / "absent.yml") == []


def test_experiment_names_follow_the_issue_format(tmp_path, monkeypatch):
    """'<prefix> - <name> (<first 8 chars of id>)': the file's id for listed products, uuid5 of the name
    otherwise; the prefix and artifact root come from the environment."""
    path = tmp_path / "products.yml"
    path.write_text(GOOD)
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    monkeypatch.setenv("RAGTRAIL_EXPERIMENT_PREFIX", "Search team")
    monkeypatch.setenv("RAGTRAIL_MLFLOW_ARTIFACT_ROOT", "s3://trail-bucket/mlflow/")
    assert experiment_name("docs") == "Search team - docs (0f5c7a2e)"
    adhoc = str(uuid.uuid5(uuid.UUID("6f1c2a9e-4d0b-5e3a-9c71-2b8d4e6f0a13"), "scratch"))
    assert experiment_name("scratch") == f"Search team - scratch ({adhoc[:8]})"
    assert adhoc_id("scratch") == adhoc  # stable: the same on every machine
    assert artifact_location("docs") == "s3://bucket/trail/docs"  # the product's own setting
    assert artifact_location("scratch") == "s3://trail-bucket/mlflow/scratch"


def test_lifecycle_keys_on_change_approval_and_canary(tmp_path):
    """`schedule: on_change`, `approval`, `evaluation.queries` and `canary` are read and checked like the rest."""
    path = tmp_path / "p.yml"
    path.write_text("products:\n  - {name: a, source: s3://b/a/, schedule: on_change, approval: {mode: held, "
                    "timeout_hours: 2}, evaluation: {queries: /q.jsonl}, canary: true}\n"
                    "  - {name: b, source: s3://b/b/, canary: {schedule: '@hourly', tolerance: 0.1}}\n"
                    "  - {name: c, source: s3://b/c/}\n")
    a, b, c = load_products(path)
    assert (a.schedule, a.approval, a.approval_timeout_h, a.eval_queries) == ("on_change", "held", 2.0, "/q.jsonl")
    assert a.canary == {"schedule": "@daily", "tolerance": 0.05} and b.canary == {"schedule": "@hourly", "tolerance": 0.1}
    assert c.canary is None and c.approval == "off"
    for bad, message in (("approval: {mode: sometimes}", "approval.mode must be one of off, held, always"),
                         ("canary: {tolerance: 2}", "canary.tolerance a number between 0 and 1"),
                         ("canary: {every: day}", "canary takes true or {schedule, tolerance}")):
        path.write_text(f"products:\n  - {{name: d, source: s3://b/d/, {bad}}}\n")
        with pytest.raises(ProductsFileError, match=message.replace("{", r"\{").replace("}", r"\}")):
            load_products(path)


def test_source_events_names_the_sqs_queue_of_an_s3_on_change_product(tmp_path):
    """`source_events`: the queue URL (bare or {queue, aws_conn_id}); only with an s3:// source and on_change;
    a URL with credentials is refused without echoing them."""
    queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/docs-events"
    path = tmp_path / "p.yml"
    path.write_text(f"products:\n  - {{name: a, source: s3://b/a/, schedule: on_change, source_events: {queue}}}\n"
                    f"  - {{name: b, source: s3://b/b/, schedule: on_change, source_events: "
                    f"{{queue: '{queue}', aws_conn_id: aws_events}}}}\n"
                    "  - {name: c, source: s3://b/c/, schedule: on_change}\n")
    a, b, c = load_products(path)
    assert a.source_events == {"queue": queue, "aws_conn_id": "aws_default"}
    assert b.source_events == {"queue": queue, "aws_conn_id": "aws_events"} and c.source_events is None
    for bad, message in (
            (f"source: s3://b/d/, schedule: on_change, source_events: {{queue: '{queue}', conn: x}}",
             "source_events takes a queue URL or {queue, aws_conn_id}"),
            ("source: s3://b/d/, schedule: on_change, source_events: sqs-queue-name", "must be an SQS queue URL"),
            ("source: s3://b/d/, schedule: on_change, source_events: 'https://sqs.example.com/'",
             "must be an SQS queue URL"),
            ("source: s3://b/d/, schedule: on_change, source_events: 'https://AKIA:s3cr3t@sqs.example.com/1/q'",
             "must not carry credentials"),
            (f"source: s3://b/d/, schedule: on_change, source_events: {{queue: '{queue}', aws_conn_id: 'a b'}}",
             "source_events.aws_conn_id must be an Airflow connection id"),
            (f"source: /data/d, schedule: on_change, source_events: '{queue}'", "source_events needs an s3:// source"),
            (f"source: s3://b/d/, schedule: '@daily', source_events: '{queue}'",
             "source_events needs schedule: on_change")):
        path.write_text(f"products:\n  - {{name: d, {bad}}}\n")
        with pytest.raises(ProductsFileError) as err:
            load_products(path)
        assert message in str(err.value) and "(d)" in str(err.value) and "s3cr3t" not in str(err.value)
