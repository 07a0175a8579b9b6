"""The ingest stage on hostile corpora: one corpus per bad case, each bad file quarantined with its reason
next to a good one that is kept; nothing is written outside the work folder."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest
import samples
from conftest import put_objects, write_corpus

from ragtrail.core.recorder import Recorder
from ragtrail.sources.tables import TableSpec
from ragtrail.stages.ingest import NoUsableDocuments, ingest_source
from ragtrail_airflow.rag.s3 import s3_client_factory

GOOD = {"good.md": "# Good\n\nA perfectly fine document about Qdrant aliases."}
HOSTILE = {
    "empty": {"empty.txt": b""},
    "binary": {"garbage.txt": b"\x00\x01\x02\xff\xfe" * 200},
    "corrupt_docx": {"broken.docx": b"PK\x03\x04 a torn zip" * 10},
    "corrupt_pdf": {"broken.pdf": samples.corrupt_pdf()},
    "encrypted_pdf": {"locked.pdf": samples.encrypted_pdf()},
    "no_text_layer": {"scan.pdf": samples.blank_pdf()},
    "too_large": {"huge.txt": "big text " * 2000},
    "missing_text_column": {"table.csv": "id,body\n1,text in the wrong column\n"},
    "unsupported_type": {"photo.png": b"\x89PNG\r\n\x1a\n"},
}


def snapshot(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def quarantine_of(workdir):
    return {q["doc_id"]: q["reason"] for q in json.loads((workdir / "quarantine.json").read_text())}


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_each_hostile_file_is_quarantined_beside_a_good_one(tmp_path, reason):
    corpus = write_corpus(tmp_path / "corpus", {**GOOD, **HOSTILE[reason]})
    workdir = tmp_path / "work"
    before = snapshot(tmp_path)
    rec = Recorder()
    out = ingest_source(str(corpus), workdir, recorder=rec, max_doc_bytes=10_000)
    (bad_name,) = HOSTILE[reason]
    assert out["docs"] == 1 and out["quarantined"] == 1
    assert quarantine_of(workdir) == {bad_name: reason}
    assert rec.metrics["docs_failed"] == 1 and rec.metrics[f"quarantined_{reason}"] == 1
    assert pq.read_table(workdir / "docs.parquet").column("doc_id").to_pylist() == ["good.md"]
    after = snapshot(tmp_path)
    assert [s for s in after if not s[0].startswith(str(workdir))] == before  # corpus untouched


def test_symlink_outside_the_root_is_never_followed(tmp_path):
    secret = write_corpus(tmp_path / "elsewhere", {"secret.md": "The launch code is 0000."})
    corpus = write_corpus(tmp_path / "corpus", GOOD)
    (corpus / "linked.md").symlink_to(secret / "secret.md")
    (corpus / "linked-dir").symlink_to(secret)
    workdir = tmp_path / "work"
    ingest_source(str(corpus), workdir)
    assert quarantine_of(workdir) == {"linked.md": "symlink_outside_root", "linked-dir": "symlink_outside_root"}
    texts = pq.read_table(workdir / "docs.parquet").column("text").to_pylist()
    assert not any("launch code" in t for t in texts)


def test_manifest_has_provenance_for_every_document(tmp_path):
    """uri, doc_id, bytes, sha256, type, parser, status, reason and mtime per row; table rows are documents."""
    corpus = write_corpus(tmp_path / "corpus", {**GOOD, "e.txt": b"", "r.pdf": samples.text_pdf("PDF words.")})
    samples.write_table(corpus / "rows.parquet", samples.ROWS)
    rec = Recorder()
    ingest_source(str(corpus), tmp_path / "work", recorder=rec)
    rows = {r["doc_id"]: r for r in map(json.loads, (tmp_path / "work" / "manifest.jsonl").read_text().splitlines())}
    assert set(rows) == {"good.md", "e.txt", "r.pdf", "rows.parquet#1", "rows.parquet#2", "rows.parquet#a-3"}
    for row in rows.values():
        assert {"uri", "doc_id", "bytes", "sha256", "type", "parser", "status", "reason", "mtime", "etag"} <= set(row)
        assert row["sha256"] and row["mtime"]
    assert rows["r.pdf"]["parser"] == "pypdfium2" and rows["r.pdf"]["type"] == "pdf"
    assert rows["rows.parquet#2"]["uri"].endswith("/rows.parquet#2") and rows["rows.parquet#2"]["parser"] == "pyarrow"
    assert rows["e.txt"]["status"] == "quarantined" and rows["e.txt"]["reason"] == "empty"
    assert rec.metrics["docs_seen"] == 6 and rec.metrics["docs_parsed"] == 5
    meta = pq.read_table(tmp_path / "work" / "docs.parquet").to_pydict()
    by_id = dict(zip(meta["doc_id"], meta["metadata"], strict=True))
    assert json.loads(by_id["rows.parquet#1"]) == {"lang": "en", "stars": 5.0} and by_id["good.md"] is None


def test_same_data_gives_the_same_dataset_digest(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {**GOOD, "b.txt": "Second document.", "bad.txt": b""})
    digests = []
    for run in ("one", "two"):
        rec = Recorder()
        ingest_source(str(corpus), tmp_path / run, recorder=rec)
        digests.append(rec.datasets[0]["digest"])
    (corpus / "b.txt").write_text("Second document, edited.")
    rec = Recorder()
    ingest_source(str(corpus), tmp_path / "three", recorder=rec)
    assert digests[0] == digests[1] != rec.datasets[0]["digest"]


def test_zero_usable_documents_raise_one_clear_error_after_recording(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"a.txt": b"", "b.pdf": samples.blank_pdf()})
    rec = Recorder()
    with pytest.raises(NoUsableDocuments, match=r"no usable documents in .*: 2 found \((1 empty, 1 no_text_layer|1 no_text_layer, 1 empty)\)"):
        ingest_source(str(corpus), tmp_path / "work", recorder=rec)
    assert rec.metrics["docs_failed"] == 2 and [p.name for p, _ in rec.files] == ["manifest.jsonl", "quarantine.json"]


def test_s3_hostile_keys_are_quarantined_and_nothing_lands_outside_the_work_folder(tmp_path, s3_server):
    """Keys with '..' or '//' are never downloaded; downloads stay in <workdir>/downloads and are cleaned up."""
    put_objects(s3_server.client, "hostile", {
        "in/good.md": GOOD["good.md"], "in/rows.csv": "id,text,lang\n1,Row one.,en\n",
        "in/../../escaped-1.md": "escape attempt", "in/a/../../../escaped-2.md": "escape attempt",
        "in//escaped-3.md": "escape attempt", "in/sub//escaped-4.md": "escape attempt",
        "in/too-big.txt": "x" * 5000})
    workdir = tmp_path / "run" / "work"
    client = s3_client_factory("aws_default")()
    fetched = []
    client.meta.events.register("provide-client-params.s3.GetObject", lambda params, **kw: fetched.append(params["Key"]))
    before = snapshot(tmp_path)
    rec = Recorder()
    out = ingest_source("s3://hostile/in", workdir, recorder=rec, max_doc_bytes=1000, s3_client=lambda: client)
    assert out["docs"] == 2
    assert quarantine_of(workdir) == {"../../escaped-1.md": "unsafe_key", "a/../../../escaped-2.md": "unsafe_key",
                                      "/escaped-3.md": "unsafe_key", "sub//escaped-4.md": "unsafe_key",
                                      "too-big.txt": "too_large"}
    assert rec.metrics["quarantined_unsafe_key"] == 4
    assert sorted(fetched) == ["in/good.md", "in/rows.csv"]  # unsafe and too large keys: never downloaded
    assert [s for s in snapshot(tmp_path) if not s[0].startswith(str(workdir))] == before
    assert not [f for _, _, files in os.walk(tmp_path.parent) for f in files if f.startswith("escaped-")]
    assert not (workdir / "downloads").exists()  # every download was parsed and removed
    manifest = [json.loads(line) for line in (workdir / "manifest.jsonl").read_text().splitlines()]
    assert {r["doc_id"] for r in manifest if r["status"] == "indexed"} == {"good.md", "rows.csv#1"}
    assert all(r["etag"] and r["mtime"] for r in manifest)
    assert rec.params["source"] == "s3://hostile/in" and rec.datasets[0]["source"] == "s3://hostile/in"


def test_table_spec_from_form_strings():
    assert TableSpec.from_strings("", "text", "*") == TableSpec()
    assert TableSpec.from_strings(" sku ", "body", "a, b,,") == TableSpec("sku", "body", ("a", "b"))
    assert TableSpec.from_strings(None, None, "").metadata_columns == ()
