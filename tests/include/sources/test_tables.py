"""Tables: one document per row, the same ids and texts whatever the format, bad rows and files quarantined."""

from __future__ import annotations

import json
import math

import pytest
import samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ragtrail.sources.tables as tables
from ragtrail.sources.parsing import Parsed, ParseError, parse_file
from ragtrail.sources.tables import Columns, TableSpec, row_document

FORMATS = ["csv", "tsv", "jsonl", "parquet", "xlsx"]
TABLE_REASONS = {"empty", "binary", "corrupt_table", "missing_text_column", "missing_id_column", "missing_id",
                 "duplicate_id", "invalid_json", "zip_bomb", "encrypted_office", "unknown_encoding"}


def outcomes(path, spec=None):
    return list(parse_file(path.name, path, table=spec))


def test_every_format_gives_the_same_ids_and_texts(tmp_path):
    """csv, tsv, jsonl, parquet and xlsx of the same rows yield identical (id, text) pairs and metadata keys."""
    results = {}
    for fmt in FORMATS:
        docs = outcomes(samples.write_table(tmp_path / f"rows.{fmt}", samples.ROWS))
        assert all(isinstance(d, Parsed) for d in docs), docs
        # A workbook's row ids carry their sheet: <file>#<sheet>!<id>.
        results[fmt] = [(d.key.removeprefix("Sheet1!") if fmt == "xlsx" else d.key, d.text) for d in docs]
        assert fmt != "xlsx" or all(d.key.startswith("Sheet1!") for d in docs)
        assert all(set(d.metadata) == {"lang", "stars"} for d in docs), fmt
        assert [d.metadata["lang"] for d in docs] == ["en", "en", "de"] and docs[2].metadata["stars"] is None
    expected = [("1", samples.ROWS[0]["text"]), ("2", samples.ROWS[1]["text"]),
                ("a-3", "Airflow schedules DAG runs.\nRetries included.")]
    assert all(r == expected for r in results.values()), results


def test_columns_are_configurable(tmp_path):
    rows = [{"sku": "X-1", "body": "Red kettle, 1.7 l.", "brand": "Acme", "price": 19.5, "internal": "no"},
            {"sku": "X-2", "body": "Blue kettle.", "brand": "Acme", "price": 21, "internal": "no"}]
    path = samples.write_table(tmp_path / "products.csv", rows)
    spec = TableSpec.from_strings("sku", "body", "brand, price")
    docs = outcomes(path, spec)
    assert [(d.key, d.text, d.metadata) for d in docs] == [
        ("X-1", "Red kettle, 1.7 l.", {"brand": "Acme", "price": 19.5}),
        ("X-2", "Blue kettle.", {"brand": "Acme", "price": 21.0})]
    assert all(d.metadata is None for d in outcomes(path, TableSpec.from_strings("sku", "body", "")))


def test_id_falls_back_to_doc_id_then_row_number(tmp_path):
    with_doc_id = samples.write_table(tmp_path / "a.jsonl", [{"doc_id": "k1", "text": "one"}, {"doc_id": "k2", "text": "two"}])
    assert [d.key for d in outcomes(with_doc_id)] == ["k1", "k2"]
    no_id = samples.write_table(tmp_path / "b.csv", [{"text": "one"}, {"text": "two"}])
    assert [d.key for d in outcomes(no_id)] == ["1", "2"]


def test_large_tables_are_read_in_batches_with_continuous_rows(tmp_path, monkeypatch):
    """Batches of 7 rows: ids, row numbers and duplicate detection carry across batch boundaries."""
    monkeypatch.setattr(tables, "READ_BATCH", 7)
    rows = [{"text": f"row number {i}"} for i in range(1, 51)]
    for fmt in ("csv", "parquet"):
        docs = outcomes(samples.write_table(tmp_path / f"big.{fmt}", rows))
        assert [d.key for d in docs] == [str(i) for i in range(1, 51)]
        assert docs[-1].text == "row number 50"
    dup = samples.write_table(tmp_path / "dup.csv", [{"id": i % 9, "text": f"t{i}"} for i in range(20)])
    out = outcomes(dup)
    assert sum(isinstance(o, Parsed) for o in out) == 9
    assert {o.reason for o in out if isinstance(o, ParseError)} == {"duplicate_id"}


def test_bad_rows_are_quarantined_one_by_one(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": 1, "text": "good one"}\n'
                    '{"id": 2, "text": "   "}\n'
                    '{"id": null, "text": "no id"}\n'
                    'this is not json\n'
                    '[1, 2]\n'
                    '{"id": 1, "text": "same id again"}\n'
                    '{"id": 7, "text": "good seven"}\n')
    out = outcomes(path)
    assert [(o.key, o.text) for o in out if isinstance(o, Parsed)] == [("1", "good one"), ("7", "good seven")]
    assert [(o.reason, o.key) for o in out if isinstance(o, ParseError)] == [
        ("empty", "2"), ("missing_id", "row-3"), ("invalid_json", "row-4"), ("invalid_json", "row-5"),
        ("duplicate_id", "1@row-6")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_table_without_the_text_column_is_one_quarantine_entry(tmp_path, fmt):
    path = samples.write_table(tmp_path / f"t.{fmt}", [{"id": 1, "body": "text under another name"}])
    (out,) = outcomes(path)
    assert isinstance(out, ParseError) and out.reason == "missing_text_column" and out.key is None
    assert "'text'" in out.message and "body" in out.message


@pytest.mark.parametrize("name,data,reason", [
    ("empty.csv", b"", "empty"),
    ("header-only.csv", b"id,text\n", "empty"),
    ("nul.csv", b"id,text\n1,\x00\x01\x02", "binary"),
    ("ragged.csv", b'id,text\n1,"unterminated\n', "corrupt_table"),
    ("fake.parquet", b"PAR1 not really parquet", "corrupt_table"),
    ("fake.xlsx", b"PK\x03\x04 not a zip", "corrupt_table"),
])
def test_broken_table_files_get_a_reason(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    out = outcomes(path)
    assert [o.reason for o in out] == [reason], [(o.reason, o.message) for o in out]


cells = st.one_of(st.none(), st.text(max_size=40), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                  st.booleans(), st.binary(max_size=20), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), st.dates())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "text", "lang", "n", "x y"]), cells), st.integers(1, 10**6))
def test_row_mapping_of_arbitrary_cells_gives_a_document_or_a_reason(record, row_number):
    """Property: any cell values map to a row document with JSON-safe metadata, or a row-level reason."""
    try:
        doc = row_document(record, Columns("id", "text", None), row_number, "csv")
    except ParseError as err:
        assert err.reason in {"missing_id", "empty"} and err.key
        return
    assert doc.text.strip() and doc.key
    json.dumps(doc.metadata, allow_nan=False)  # NaN/inf became None; bytes, dates became strings
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in (doc.metadata or {}).values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=1500), st.sampled_from(FORMATS))
def test_arbitrary_bytes_never_escape_the_table_readers(tmp_path, data, fmt):
    """Property: whatever the bytes of a .csv/.tsv/.jsonl/.parquet/.xlsx, readers yield documents or reasons."""
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(data)
    for out in parse_file(path.name, path):
        if isinstance(out, ParseError):
            assert out.reason in TABLE_REASONS, (out.reason, out.message)
        else:
            assert out.text.strip() and out.key


@pytest.mark.parametrize("name,data,encoding", [
    # Excel's "Unicode Text" export: UTF-16 LE with a BOM, tab-separated.
    ("export.tsv", "id\ttext\n1\tGröße und Maß\n2\tcafé crème\n".encode("utf-16"), "utf-16"),
    # Excel's "CSV" on a Western Windows: CP1252, with curly quotes and the euro sign.
    ("export.csv", "id,text\n1,Größe und Maß \u201cquoted\u201d\n2,café crème 5 €\n".encode("cp1252"), "cp1252"),
    ("rows.jsonl", b"\xef\xbb\xbf" + '{"id": 1, "text": "Größe und Maß"}\n{"id": 2, "text": "café crème"}\n'.encode(),
     "utf-8-sig"),
])
def test_text_tables_in_legacy_and_utf16_encodings_are_read(tmp_path, name, data, encoding):
    path = tmp_path / name
    path.write_bytes(data)
    docs = outcomes(path)
    assert all(isinstance(d, Parsed) for d in docs), docs
    assert docs[0].text.startswith("Größe und Maß") and docs[1].text.startswith("café crème")
    assert {d.encoding for d in docs} == {encoding}
