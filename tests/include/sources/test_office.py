"""Word, PowerPoint and Excel files: real files written by python-docx / python-pptx / openpyxl are read with
their structure; bombs, encrypted and corrupt packages get their own reasons; every sheet of a workbook is read."""

from __future__ import annotations

import zipfile

import pytest
import samples

from ragtrail.sources.parsing import Parsed, ParseError, parse_file
from ragtrail.sources.sandbox import SandboxedParser


@pytest.fixture(scope="module")
def sandbox():
    with SandboxedParser(timeout_s=60) as parser:
        yield parser


def one(path, sandbox):
    (out,) = list(parse_file(path.name, path, sandbox=sandbox))
    return out


def test_docx_keeps_headings_lists_and_tables_in_order(tmp_path, sandbox):
    doc = one(samples.docx_file(tmp_path / "policy.docx"), sandbox)
    assert isinstance(doc, Parsed), doc
    assert doc.doc_type == "docx" and doc.parser == "python-docx"
    assert doc.text.splitlines() == [
        "# Travel policy", "", "# Booking", "", "Book trains at least two weeks ahead.", "",
        "- Economy class for trips under four hours", "", "- First class needs a manager's approval", "",
        "## Claims", "", "- Submit receipts within 30 days", "", "| Item | Limit |", "| Hotel | 150 EUR |"]


def test_pptx_gives_one_heading_per_slide_with_bullets_and_notes(tmp_path, sandbox):
    doc = one(samples.pptx_file(tmp_path / "review.pptx"), sandbox)
    assert isinstance(doc, Parsed), doc
    assert doc.parser == "python-pptx"
    assert doc.text.splitlines() == [
        "# Quarterly review", "", "- Search quality up 12 percent", "",
        "# Next steps", "", "- Ship the reranker", "- Measure nDCG first", "", "Notes: Mention the latency budget."]


def _zip_without_document(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    return path


def _truncated(path):
    data = samples.docx_file(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_xml(path):
    samples.docx_file(path)
    with zipfile.ZipFile(path) as src:
        parts = {i.filename: src.read(i) for i in src.infolist()}
    parts["word/document.xml"] = b"<w:document><unclosed"
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in parts.items():
            dst.writestr(name, data)
    return path


@pytest.mark.parametrize("name,make,reason", [
    ("bomb.docx", samples.zip_bomb_docx, "zip_bomb"),
    ("locked.docx", samples.encrypted_docx, "encrypted_office"),
    ("legacy.docx", samples.ole2_doc_renamed, "corrupt_docx"),
    ("noise.docx", lambda p: (p.write_bytes(b"PK\x03\x04 not really a zip" * 10), p)[1], "corrupt_docx"),
    ("half.docx", _truncated, "corrupt_docx"),
    ("badxml.docx", _bad_xml, "corrupt_docx"),
    ("slides.pptx", _zip_without_document, "corrupt_pptx"),
    ("word-in-disguise.pptx", samples.docx_file, "corrupt_pptx"),
])
def test_bad_office_files_get_their_own_reason(tmp_path, sandbox, name, make, reason):
    out = one(make(tmp_path / name), sandbox)
    assert isinstance(out, ParseError) and out.reason == reason, out
    assert out.message


def test_the_sandbox_still_serves_after_bad_office_files(tmp_path, sandbox):
    """One child serves PDFs and Office files in turn; a refused file does not cost the next one."""
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(samples.text_pdf("Still a PDF."))
    assert isinstance(one(samples.zip_bomb_docx(tmp_path / "b.docx"), sandbox), ParseError)
    assert one(pdf, sandbox).text == "Still a PDF."
    assert one(samples.pptx_file(tmp_path / "c.pptx"), sandbox).text.startswith("# Quarterly review")


def test_every_sheet_of_a_workbook_is_read_with_sheet_qualified_ids(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    faq = wb.active
    faq.title = "FAQ"
    faq.append(["id", "text", "team"])
    faq.append(["q1", "How are chunks counted?", "search"])
    faq.append([None, None, None])  # a formatting-only row
    faq.append(["q2", "What is a parent run?", "tracking"])
    wb.create_sheet("Glossary").append(["text"])
    wb["Glossary"].append(["Alias: a name that points at one collection."])
    wb.create_sheet("Empty")
    lookup = wb.create_sheet("Lookup")
    lookup.append(["code", "label"])
    lookup.append([1, "one"])
    path = tmp_path / "book.xlsx"
    wb.save(path)
    outs = list(parse_file(path.name, path))
    docs = {o.key: (o.text, o.metadata) for o in outs if isinstance(o, Parsed)}
    assert docs == {"FAQ!q1": ("How are chunks counted?", {"team": "search"}),
                    "FAQ!q2": ("What is a parent run?", {"team": "tracking"}),
                    "Glossary!1": ("Alias: a name that points at one collection.", None)}
    (bad,) = [o for o in outs if isinstance(o, ParseError)]
    assert bad.reason == "missing_text_column" and bad.key == "Lookup" and "Lookup" in bad.message


def test_a_zip_bomb_xlsx_is_refused_before_openpyxl_opens_it(tmp_path):
    path = tmp_path / "bomb.xlsx"
    samples.write_table(path, [{"id": 1, "text": "fine"}])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf, zf.open("xl/media/zeros.bin", "w") as fh:
        for _ in range(40):
            fh.write(bytes(1 << 20))
    (out,) = list(parse_file(path.name, path))
    assert isinstance(out, ParseError) and out.reason == "zip_bomb"
