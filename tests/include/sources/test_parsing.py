"""Parsers return text or a quarantine reason — never an unexpected exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrail.sources.parsing import ParseError, parse_bytes


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
    ("image.png", b"\x89PNG", "unsupported_type"),
    ("empty.html", b"<html><script>x()</script></html>", "empty"),
])
def test_bad_input_gets_a_reason(name, data, reason):
    with pytest.raises(ParseError) as err:
        parse_bytes(name, data)
    assert err.value.reason == reason and err.value.message


def test_a_stray_bad_byte_in_utf8_is_tolerated():
    """UTF-8 text (it has multi-byte characters) with under 1 % bad bytes keeps U+FFFD in their place."""
    doc = parse_bytes("mostly.txt", "good text, naïve café ".encode() * 100 + b"\xff")
    assert "\ufffd" in doc.text and doc.text.startswith("good text, naïve café") and doc.encoding == "utf-8"


GERMAN = "Die Straßenbahn fährt über die Brücke; Größe und Maß der Fußgänger sind geprüft. "
FRENCH = "L'été à Paris : café, crème brûlée et « déjà vu » — un hôtel près de la Seine. "


@pytest.mark.parametrize("data,encoding,text", [
    (GERMAN.encode("utf-16"), "utf-16-le", GERMAN),  # what Windows tools write: BOM + little-endian
    (b"\xfe\xff" + GERMAN.encode("utf-16-be"), "utf-16-be", GERMAN),
    (b"\xff\xfe\x00\x00" + FRENCH.encode("utf-32-le"), "utf-32-le", FRENCH),
    (b"\x00\x00\xfe\xff" + FRENCH.encode("utf-32-be"), "utf-32-be", FRENCH),
    (b"\xef\xbb\xbf" + FRENCH.encode(), "utf-8-sig", FRENCH),
    ((GERMAN * 5).encode("latin-1"), None, GERMAN * 5),
    ((FRENCH.replace("«", "\u201c").replace("»", "\u201d") + "Prix : 5 €. ").encode("cp1252") * 5, "cp1252",
     (FRENCH.replace("«", "\u201c").replace("»", "\u201d") + "Prix : 5 €. ") * 5),
])
def test_legacy_and_unicode_encodings_are_read(data, encoding, text):
    doc = parse_bytes("legacy.txt", data)
    assert doc.text == text.strip(), doc.text[:200]
    if encoding:
        assert doc.encoding == encoding
    else:  # German Latin-1: latin-1, cp1252 and cp1250 agree on every byte of it; the text is what counts
        assert doc.encoding not in (None, "utf-8")


@pytest.mark.parametrize("head", [
    b'<meta charset="windows-1252">',
    b"<meta http-equiv='Content-Type' content='text/html; charset=ISO-8859-1'>",
])
def test_html_honours_its_declared_charset(head):
    body = "Œuvres complètes — “Les Misérables”, 5 €."
    html = b"<html><head>" + head + b"<title>Caf\xe9</title></head><body><p>" + body.encode("cp1252") + b"</p></body></html>"
    doc = parse_bytes("page.html", html)
    assert doc.encoding == "cp1252" and doc.text == "# Café\n\n" + body  # the title leads as a heading


def test_utf8_html_wins_over_a_wrong_declaration():
    html = "<html><head><meta charset='windows-1252'></head><body>naïve — ok</body></html>".encode()
    assert parse_bytes("page.html", html).text == "naïve — ok"


def test_binary_is_still_binary():
    for data in (bytes(range(256)) * 8, b"\x00\x01\x02\xff\xfe" * 200, b"\x01\x02\x03\x04\x05\x06" * 300):
        with pytest.raises(ParseError) as err:
            parse_bytes("x.txt", data)
        assert err.value.reason == "binary"


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
