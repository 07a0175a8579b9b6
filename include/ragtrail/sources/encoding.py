"""Bytes to text, whatever encoding a person's tools wrote: the first rule that applies decides.

1. A byte-order mark: UTF-32, UTF-8 or UTF-16 (what Windows tools often write) — decoded as marked.
2. NUL bytes without a BOM: ``binary``.
3. Strict UTF-8.
4. UTF-8 with a few stray bytes: when the text holds valid multi-byte UTF-8 and under 1 % of it fails
   to decode, it is kept with U+FFFD in place of the bad bytes (one stray byte should not cost the
   document, and a legacy detector would garble the good UTF-8 around it).
5. A declared charset (HTML ``<meta charset>``; the caller passes it) that decodes the bytes.
6. Windows-1252 (a superset of Latin-1) when it decodes the bytes and charset-normalizer's mess
   detector finds the result clean (:data:`MAX_CHAOS`): on short Western texts the detector alone
   often names a sibling code page (cp1257, mac_iceland) that garbles a few letters; browsers make
   the same Western default for undeclared pages.
7. charset-normalizer's best guess, with the same confidence floor: CP1251, Shift-JIS, CP1253…
8. Otherwise ``binary`` when the bytes look like control codes, else ``unknown_encoding``.

The chosen encoding is returned with the text and lands in the ingest manifest.
"""

from __future__ import annotations

import codecs
import re

# Share of undecodable bytes under which near-UTF-8 text is kept (with U+FFFD) rather than re-detected.
MAX_REPLACEMENT_RATIO = 0.01
# charset-normalizer's "chaos" (mess ratio, 0 = clean) above which a decoding is not trusted (its default).
MAX_CHAOS = 0.2
DETECT_SAMPLE = 256 * 1024  # bytes the detector looks at; the whole file is then decoded with its answer
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")


class DecodeError(ValueError):
    """Bytes that are not text: ``reason`` is ``binary`` or ``unknown_encoding``."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _binary_check(text: str, encoding: str) -> tuple[str, str]:
    if len(_CONTROL.findall(text[:8192])) > 0.05 * min(len(text), 8192):
        raise DecodeError("binary", f"mostly control characters as {encoding}: binary content")
    return text, encoding


def _codec(name: str | None) -> str | None:
    try:
        return codecs.lookup(name).name if name else None
    except LookupError:
        return None


def decode(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Return ``(text, encoding)`` or raise :class:`DecodeError` (see the module docstring for the order).

    Args:
        declared: a charset the document names for itself (HTML meta); tried after UTF-8.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            body = data[len(bom):] if name != "utf-8-sig" else data
            return _binary_check(body.decode(name, errors="replace"), name)
    if b"\x00" in data[:8192]:
        raise DecodeError("binary", "NUL bytes and no byte-order mark: binary content")
    try:
        return _binary_check(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if _MULTIBYTE.search(data):
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") <= max(1, len(text) * MAX_REPLACEMENT_RATIO):
            return _binary_check(text, "utf-8")
    declared = _codec(declared)
    if declared and declared not in ("utf-8", "ascii"):
        try:
            return _binary_check(data.decode(declared), declared)
        except UnicodeDecodeError:
            pass  # the declaration is wrong: detect
    return _detect(data)


def _detect(data: bytes) -> tuple[str, str]:
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    if len(_CONTROL_BYTES.findall(data[:8192])) > 0.05 * min(len(data), 8192):
        raise DecodeError("binary", "mostly control bytes: binary content")
    try:
        western = data.decode("cp1252")
    except UnicodeDecodeError:
        western = None
    if western is not None and mess_ratio(western[:DETECT_SAMPLE], MAX_CHAOS) <= MAX_CHAOS:
        return _binary_check(western, "cp1252")
    best = from_bytes(data[:DETECT_SAMPLE]).best()
    if best is None or best.chaos > MAX_CHAOS:
        how = "no candidate" if best is None else f"best guess {best.encoding} is {best.chaos:.0%} noise"
        raise DecodeError("unknown_encoding", f"neither UTF-8 nor a recognisable encoding ({how})")
    name = _codec(best.encoding) or best.encoding
    return _binary_check(data.decode(name, errors="replace"), name)


_STREAM_CODECS = {"utf-8-sig": "utf-8-sig", "utf-16-le": "utf-16", "utf-16-be": "utf-16", "utf-32-le": "utf-32",
                  "utf-32-be": "utf-32"}


def stream_encoding(head: bytes, whole: bool = False) -> str:
    """The codec to stream a whole text file (a CSV, JSON lines) with, judged by :func:`decode` on its head.

    A BOM gives the BOM-aware codec (``utf-16`` reads either byte order); plain UTF-8 gives ``utf-8-sig``.
    ``whole``: ``head`` is the entire file (else it is cut at its last line break before judging).
    Raises :class:`DecodeError` like :func:`decode`.
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return _STREAM_CODECS[name]
    if not whole and b"\n" in head:
        head = head[: head.rfind(b"\n") + 1]
    name = decode(head)[1]
    return "utf-8-sig" if name == "utf-8" else name
