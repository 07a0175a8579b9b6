"""Parsers return text or a quarantine reason — never an unexpected exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrail.parsing import ParseError, parse_bytes


def test_html_keeps_visible_text_only():
    html = b"<html><head><title>T</title><style>p{}</style><script>alert(1)</script></head>" \
           b"<body><h1>Heading</h1><p>Body text.</p><noscript>nojs</noscript></body></html>"
    doc = parse_bytes("page.html", html)
    assert "Heading" in doc.text and "Body text." in doc.text
    assert "alert" not in doc.text and "p{}" not in doc.text and "nojs" not in doc.text


@pytest.mark.parametrize("name,data,reason", [
    ("empty.md", b"", "empty"),
    ("blank.txt", b"  \n\t ", "empty"),
    ("bin.txt", b"\x00\x01\x02\x03PK", "binary"),
    ("latin.txt", "caf\u00e9 ".encode("latin-1") * 50, "invalid_utf8"),
    ("image.png", b"\x89PNG", "unsupported_type"),
    ("empty.html", b"<html><script>x()</script></html>", "empty"),
])
def test_bad_input_gets_a_reason(name, data, reason):
    with pytest.raises(ParseError) as err:
        parse_bytes(name, data)
    assert err.value.reason == reason and err.value.message


def test_a_stray_bad_byte_is_tolerated():
    """Fallback: under 1 % undecodable bytes are replaced with U+FFFD, not quarantined."""
    doc = parse_bytes("mostly.txt", b"good text " * 100 + b"\xff")
    assert "\ufffd" in doc.text and doc.text.startswith("good text")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["a.txt", "b.md", "c.html", "d.htm", "e.bin"]))
def test_arbitrary_bytes_never_escape_the_parser(data, name):
    """Property: any bytes give text or a ParseError."""
    try:
        assert parse_bytes(name, data).text.strip()
    except ParseError as err:
        assert err.reason


def test_pdfs_and_tables_need_parse_file():
    """parse_bytes is the in-memory text/HTML parser; a PDF or table name gets a reason, not a wrong parse."""
    for name in ("report.pdf", "rows.csv"):
        with pytest.raises(ParseError) as err:
            parse_bytes(name, b"%PDF-1.4 or id,text")
        assert err.value.reason == "unsupported_type" and "in-memory" in err.value.message
