"""The ingest stage parses with several sandboxed children and writes exactly what one child writes: the
same docs.parquet bytes, manifest lines and quarantine list, on a mixed folder where hostile files (one over
its time budget; one over its memory budget, whose child is replaced; a broken table) sit among good ones."""

from __future__ import annotations

import json

import pathological
import pytest

from ragtrail.core.cpus import usable_cpus
from ragtrail.core.recorder import Recorder
from ragtrail.stages.ingest import DOCS_FILE, MANIFEST_FILE, QUARANTINE_FILE, ingest_source

# Each case's budgets leave one outcome possible (a file that ran out of memory cannot also time out).
CASES = {
    "time": ({"wide.html": ("parse_timeout", pathological.html_wide)}, {"parse_timeout_s": 1}),
    "memory": ({"one-line.txt": ("parse_memory_limit", pathological.text_without_newline),
                "deep.jsonl": ("corrupt_table", pathological.jsonl_deep)},
               {"parse_timeout_s": 120, "parse_max_memory_mb": 400}),
}


def _good(root):
    for i in range(24):
        (root / f"page{i:02d}.html").write_text(f"<html><title>Page {i}</title><body><p>Body of page {i}.</p></body></html>")
        (root / f"note{i:02d}.md").write_text(f"# Note {i}\n\nThe text of note {i}.")
    (root / "rows.jsonl").write_text("".join(f'{{"id": "r{i}", "text": "row {i}"}}\n' for i in range(50)))


def _ingest(folder, work, workers, budgets):
    rec = Recorder()
    out = ingest_source(str(folder), work, recorder=rec, parse_workers=workers, **budgets)
    return out, rec, {name: (work / name).read_bytes() for name in (DOCS_FILE, MANIFEST_FILE, QUARANTINE_FILE)}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    hostile, budgets = CASES[request.param]
    root = tmp_path_factory.mktemp(f"mixed-{request.param}")
    _good(root)
    for name, (_, make) in hostile.items():
        make(root / name)
    serial = _ingest(root, tmp_path_factory.mktemp("serial"), 1, budgets)
    parallel = _ingest(root, tmp_path_factory.mktemp("parallel"), 3, budgets)
    return hostile, serial, parallel


def test_several_children_write_the_same_docs_manifest_and_quarantine_as_one(case):
    _, (serial, _, serial_files), (parallel, _, parallel_files) = case
    assert parallel_files == serial_files
    same = [k for k in serial if not k.endswith("_path")]  # paths name each run's own work folder
    assert {k: parallel[k] for k in same} == {k: serial[k] for k in same}


def test_each_hostile_file_is_quarantined_with_its_reason_and_the_good_ones_beside_it_kept(case):
    hostile, _, (out, rec, files) = case
    assert {q["doc_id"]: q["reason"] for q in json.loads(files[QUARANTINE_FILE])} == {
        name: reason for name, (reason, _) in hostile.items()}
    entries = [json.loads(line) for line in files[MANIFEST_FILE].decode().splitlines()]
    indexed = [e["doc_id"] for e in entries if e["status"] == "indexed"]
    assert {d for d in indexed if d.endswith((".html", ".md"))} == (
        {f"page{i:02d}.html" for i in range(24)} | {f"note{i:02d}.md" for i in range(24)})
    assert [d for d in indexed if d.startswith("rows.jsonl#")] == [f"rows.jsonl#r{i}" for i in range(50)]
    assert rec.params["parse_workers"] == "3" and out["docs"] == len(indexed)


def test_the_manifest_keeps_the_listing_order(case):
    _, _, (_, _, files) = case
    files_in_order = [json.loads(line)["doc_id"].split("#")[0] for line in files[MANIFEST_FILE].decode().splitlines()]
    assert files_in_order == sorted(files_in_order)


def test_the_number_of_children_comes_from_the_env(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    _good(tmp_path / "corpus")
    wanted = usable_cpus() + 1  # not the default, so the setting is what decided
    monkeypatch.setenv("RAGTRAIL_PARSE_WORKERS", str(wanted))
    rec = Recorder()
    out = ingest_source(str(tmp_path / "corpus"), tmp_path / "work", recorder=rec)
    assert rec.params["parse_workers"] == str(wanted) and out["docs"] == 24 * 2 + 50
