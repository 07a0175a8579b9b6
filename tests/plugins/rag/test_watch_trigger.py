"""The asset watcher's trigger: fires once per change of its source, never on the first look, keeps polling
through errors, sleeps between polls, and picks up where it was after a restart."""

from __future__ import annotations

import asyncio
import importlib

import pytest
from conftest import write_corpus

from ragtrail_airflow.rag.watch import MIN_POLL_S, SourceChangedTrigger, source_asset


def _trigger(source, key="k", poll=1.0) -> SourceChangedTrigger:
    return SourceChangedTrigger(source=str(source), key=key, poll_interval=poll)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRAIL_HOME", str(tmp_path / "home"))


def test_baseline_then_one_event_per_change(tmp_path):
    src = write_corpus(tmp_path / "src", {"a.md": "alpha"})
    trig = _trigger(src)
    assert asyncio.run(trig.poll_once()) is None  # the baseline: remembered, not fired
    assert asyncio.run(trig.poll_once()) is None  # unchanged
    write_corpus(src, {"b.md": "beta"})
    event = asyncio.run(trig.poll_once())
    assert event is not None and event.payload["source"] == str(src)
    assert event.payload["digest"] != event.payload["previous_digest"]
    assert asyncio.run(trig.poll_once()) is None  # the same change fires once


def test_a_restarted_trigger_compares_with_what_it_saw_before(tmp_path):
    """A new trigger instance (the triggerer restarted) neither re-fires nor misses a change made while it was down."""
    src = write_corpus(tmp_path / "src", {"a.md": "alpha"})
    assert asyncio.run(_trigger(src).poll_once()) is None
    assert asyncio.run(_trigger(src).poll_once()) is None
    write_corpus(src, {"b.md": "beta"})
    assert asyncio.run(_trigger(src).poll_once()) is not None


def test_an_unreadable_source_is_polled_again_not_fatal(tmp_path):
    trig = SourceChangedTrigger(source="s3://no-such-bucket/x", key="s3", aws_conn_id="no_such_connection")
    assert asyncio.run(trig.poll_once()) is None


def test_run_sleeps_the_interval_between_polls(tmp_path, monkeypatch):
    """No busy loop: every poll is followed by asyncio.sleep(poll_interval), at least one second."""
    src = write_corpus(tmp_path / "src", {"a.md": "alpha"})
    sleeps = []

    async def fake_sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise asyncio.CancelledError

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def drive():
        async for _ in _trigger(src, poll=0.01).run():
            pass

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(drive())
    assert sleeps == [MIN_POLL_S] * 3


def test_it_serializes_to_an_importable_class_with_its_arguments(tmp_path):
    trig = SourceChangedTrigger(source="s3://b/p", key="k", aws_conn_id="minio", poll_interval=30)
    path, kwargs = trig.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs) and kwargs["aws_conn_id"] == "minio"


def test_an_on_change_product_is_scheduled_on_its_watched_source_asset(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from conftest import REPO

    path = tmp_path / "products.yml"
    path.write_text(f"products:\n  - {{name: w, source: {tmp_path}, schedule: on_change}}\n")
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest__w")
    (asset,) = dag.timetable.asset_condition.objects  # the DAG waits on the source asset
    assert asset.name == "ragtrail_source__w" and asset.uri == f"file://{tmp_path}"
    assert isinstance(source_asset(type("P", (), {"name": "w", "source": str(tmp_path), "aws_conn_id": None})(),
                                   5).watchers[0].trigger, SourceChangedTrigger)
