"""PDF text through PDFium (pypdfium2), run in the sandboxed parser process (:mod:`ragtrail.sources.sandbox`).

PDFium is the PDF engine of Chrome, a C++ library under years of fuzzing. On the 311-page gnuplot manual it
reads a page about 10x faster than pypdf did, with the same words in the same order (docs/formats.md); words
hyphenated at a line's end come out whole (PDFium marks that hyphen ``\\x02``; it is dropped here).

Reasons a PDF is quarantined: ``corrupt_pdf`` (unreadable structure), ``encrypted_pdf`` (needs a
password; one encrypted only against editing opens), ``no_text_layer`` (pages but no text: a scan; OCR is
not done), plus the sandbox's ``parse_timeout``, ``parse_memory_limit`` and ``parse_crashed``. PDFium's
own allocator aborts the process when it meets the address-space limit (exit code -6, no ``MemoryError``);
the sandbox tells that from a crash by the child's peak RSS (:mod:`ragtrail.sources.sandbox_proc`), so a PDF
that needs more memory than ``RAGTRAIL_PARSE_MAX_MEMORY_MB`` ends ``parse_memory_limit``, the child replaced.

Example::

    with SandboxedParser(timeout_s=30) as sandbox:  # ragtrail.sources.sandbox
        text = sandbox.parse(Path("report.pdf"), "pdf").text
"""

from __future__ import annotations

PARSER = "pypdfium2"
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD
_SOFT_HYPHEN = "\x02"  # PDFium's mark for a hyphen that breaks a word at a line's end


def extract_in_child(path: str) -> dict:
    """Runs in the sandbox child: the text of one PDF or a reason (see the module docstring)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" not in head:
        return {"reason": "corrupt_pdf", "message": "no %PDF- header: not a PDF file"}
    opened = _open(path)
    if isinstance(opened, dict):
        return opened
    with opened as pdf:
        n_pages = len(pdf)
        if n_pages == 0:
            return {"reason": "corrupt_pdf", "message": "the PDF has no pages"}
        texts = _page_texts(pdf, n_pages)
    if isinstance(texts, dict):
        return texts
    text = "\n\n".join(t for t in texts if t)
    if not text:
        return {"reason": "no_text_layer", "message": f"{n_pages} page(s) without a text layer (a scan? OCR is not done)"}
    # Lone surrogates from broken font maps cannot be stored as UTF-8.
    return {"text": text.encode("utf-8", "replace").decode("utf-8"), "pages": n_pages, "parser": PARSER}


def _open(path: str):
    """The opened document (an empty user password is tried by PDFium itself), or a reason."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as err:
        if getattr(err, "err_code", None) == _PASSWORD_ERROR:
            return {"reason": "encrypted_pdf", "message": "the PDF is encrypted and needs a password"}
        return {"reason": "corrupt_pdf", "message": str(err)[:500]}


def _page_texts(pdf, n_pages: int) -> list[str] | dict:
    """Each page's text; a reason when no page can be read."""
    texts, failures, last_error = [], 0, ""
    for index in range(n_pages):
        try:
            texts.append(_page_text(pdf, index))
        except MemoryError:
            raise
        except Exception as err:
            failures += 1
            last_error = f"{type(err).__name__}: {err}"[:300]
    if failures == n_pages:
        return {"reason": "corrupt_pdf", "message": f"none of {n_pages} pages could be read ({last_error})"}
    return texts


def _page_text(pdf, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
    finally:
        page.close()
    return text.replace("\r\n", "\n").replace(_SOFT_HYPHEN, "").strip()
