"""A mixed corpus through the real DAG: every good document (text in legacy encodings, HTML, PDF, Word, PowerPoint,
table rows) is indexed, every bad one (a symlink loop, a FIFO nobody writes to, a zip bomb…) is quarantined with
its reason, the run is FINISHED with docs_failed > 0, and the corpus is left untouched. A source with no usable
document fails the ingest task with one clear message, and the tasks behind it are skipped, not failed."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
import samples
from conftest import child_runs_of, ingest, write_corpus

GOOD = {
    "notes/aliases.md": "# Aliases\n\nA Qdrant alias points at one collection and can be switched atomically.",
    "notes/page.html": "<html><head><style>p{}</style></head><body><p>Airflow params render a trigger form.</p>"
                       "</body></html>",
    "plain.txt": "MLflow datasets record what a run read, with a digest.",
    "stray-byte.txt": "Mostly clean UTF-8 text, naïve, with one stray byte. ".encode() * 40 + b"\xff",
    "latin1.txt": "Straße, Größe, Übermaß und Fußgänger. ".encode("latin-1") * 20,
    "windows/utf16.txt": "Notepad writes UTF-16 with a byte-order mark: Größe, café.".encode("utf-16"),
    "windows/page.html": b"<html><head><meta charset='windows-1252'></head><body><p>Caf\xe9 \x93quotes\x94 5 \x80."
                         b"</p></body></html>",
    "docs/report.pdf": samples.text_pdf("Annual report: ingestion quarantines bad files.", "Page two of the report."),
    "docs/owner-only.pdf": samples.owner_only_pdf("Readable PDF encrypted only against editing."),
    "tables/faq.csv": "id,text,team\nf1,How are chunks counted? In embedder tokens.,search\n"
                      "f2,What is a parent run? One per DAG run.,tracking\nf3,,tracking\n",
}
BAD = {
    "empty.md": b"",
    "garbage.txt": bytes(range(256)) * 8,
    "docs/broken.pdf": samples.corrupt_pdf(),
    "docs/locked.pdf": samples.encrypted_pdf(),
    "docs/scan.pdf": samples.blank_pdf(),
    "huge.txt": "far too long for the limit " * 5000,
    "tables/no-text.csv": "id,body\n1,the text is in the wrong column\n",
    "photo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
}
EXPECTED_QUARANTINE = {
    "empty.md": "empty", "garbage.txt": "binary", "docs/broken.pdf": "corrupt_pdf",
    "docs/locked.pdf": "encrypted_pdf", "docs/scan.pdf": "no_text_layer", "huge.txt": "too_large",
    "tables/no-text.csv": "missing_text_column", "photo.png": "unsupported_type",
    "outside.md": "symlink_outside_root", "tables/faq.csv#f3": "empty",
    "loop.md": "symlink_loop", "pipe.txt": "not_a_regular_file", "office/bomb.docx": "zip_bomb",
    "office/locked.docx": "encrypted_office",
}
EXPECTED_DOCS = {"notes/aliases.md", "notes/page.html", "plain.txt", "stray-byte.txt", "docs/report.pdf",
                 "docs/owner-only.pdf", "tables/faq.csv#f1", "tables/faq.csv#f2", "latin1.txt", "windows/utf16.txt",
                 "windows/page.html", "office/policy.docx", "office/review.pptx"}


def files_of(root):
    return sorted((p.relative_to(root).as_posix(), p.read_bytes()) for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    base = tmp_path_factory.mktemp("mixed")
    outside = write_corpus(base / "outside", {"private.md": "Private notes that must never be indexed."})
    corpus = write_corpus(base / "corpus", {**GOOD, **BAD})
    (corpus / "outside.md").symlink_to(outside / "private.md")
    (corpus / "loop.md").symlink_to(corpus / "loop.md")
    os.mkfifo(corpus / "pipe.txt")  # nothing writes to it: a plain open() would block the task forever
    (corpus / "office").mkdir()
    samples.docx_file(corpus / "office" / "policy.docx")
    samples.pptx_file(corpus / "office" / "review.pptx")
    samples.zip_bomb_docx(corpus / "office" / "bomb.docx", megabytes=20)
    samples.encrypted_docx(corpus / "office" / "locked.docx")
    before = files_of(base)
    summary = ingest({"source": str(corpus), "product": "mixed", "max_file_mb": 0.1})
    return summary, base, before


def test_good_documents_indexed_bad_ones_quarantined_run_finished(mixed, qdrant, mlflow_client, tmp_path):
    summary, _, _ = mixed
    assert summary["status"] == "FINISHED", summary
    assert summary["docs"] == len(EXPECTED_DOCS) and summary["docs_failed"] == len(EXPECTED_QUARANTINE) > 0
    with qdrant() as store:
        payloads = [p.payload for p in store.scroll("mixed", None)]
    assert {p["doc_id"] for p in payloads} == EXPECTED_DOCS
    assert not any("Private notes" in p["text"] for p in payloads)
    assert {p["doc_id"]: p.get("metadata") for p in payloads if "faq" in p["doc_id"]} == {
        "tables/faq.csv#f1": {"team": "search"}, "tables/faq.csv#f2": {"team": "tracking"}}

    runs = {c.info.run_name: c for c in child_runs_of(mlflow_client, summary)}
    ingest_run = runs["ingest"]
    quarantine = json.loads(open(mlflow_client.download_artifacts(
        ingest_run.info.run_id, "ingest/quarantine.json", str(tmp_path))).read())
    assert {q["doc_id"]: q["reason"] for q in quarantine} == EXPECTED_QUARANTINE
    assert all(q["message"] for q in quarantine)
    metrics = ingest_run.data.metrics
    assert metrics["docs_failed"] == len(EXPECTED_QUARANTINE)
    for reason, n in Counter(EXPECTED_QUARANTINE.values()).items():
        assert metrics[f"quarantined_{reason}"] == n, reason
    manifest = [json.loads(line) for line in open(mlflow_client.download_artifacts(
        ingest_run.info.run_id, "ingest/manifest.jsonl", str(tmp_path)))]
    assert len(manifest) == len(EXPECTED_DOCS) + len(EXPECTED_QUARANTINE)
    indexed = {r["doc_id"]: r for r in manifest if r["status"] == "indexed"}
    assert indexed["docs/report.pdf"]["parser"] == "pypdfium2" and indexed["office/policy.docx"]["parser"] == "python-docx"
    assert indexed["windows/utf16.txt"]["encoding"] == "utf-16-le" and indexed["windows/page.html"]["encoding"] == "cp1252"
    assert indexed["plain.txt"]["encoding"] == "utf-8" and indexed["latin1.txt"]["encoding"] not in (None, "utf-8")
    texts: dict[str, str] = {}
    for p in payloads:  # a document's chunks, in one text (the chunker keeps sections apart)
        texts[p["doc_id"]] = texts.get(p["doc_id"], "") + "\n" + p["text"]
    assert "Größe, café" in texts["windows/utf16.txt"] and "Café \u201cquotes\u201d 5 €." in texts["windows/page.html"]
    assert "# Booking" in texts["office/policy.docx"] and "- Ship the reranker" in texts["office/review.pptx"]
    parent = mlflow_client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["max_file_mb"] == "0.1"


def test_nothing_written_outside_the_work_folder(mixed):
    """The corpus and the symlink's target are byte for byte what they were."""
    _, base, before = mixed
    assert files_of(base) == before


def test_a_source_without_usable_documents_fails_ingest_with_one_message(tmp_path, mlflow_client):
    corpus = write_corpus(tmp_path / "bad", {"a.txt": b"", "b.txt": b"\x00\x01\x02" * 50})
    summary = ingest({"source": str(corpus), "product": "nothing"})
    assert summary["status"] == "FAILED"
    reason, consequence = summary["reasons"]  # the cause once, then what it stopped on one line
    assert reason.startswith("ingest[0]: failed") and "no usable documents in" in reason
    assert "2 found (1 empty, 1 binary)" in reason
    assert consequence.startswith("not run because of the failure above: ") and "index" in consequence
    assert "no completed plan" not in json.dumps(summary)
    assert summary["tasks"]["dedupe"] == summary["tasks"]["index"] == "SKIPPED", summary["tasks"]
    runs = {c.info.run_name: c for c in child_runs_of(mlflow_client, summary)}
    assert runs["ingest"].data.tags["ragtrail.error"].startswith("ingest[0]: AirflowFailException: no usable documents")
    assert runs["ingest"].data.metrics["docs_failed"] == 2
    artifacts = {a.path for a in mlflow_client.list_artifacts(runs["ingest"].info.run_id, "ingest")}
    assert artifacts == {"ingest/manifest.jsonl", "ingest/quarantine.json"}
