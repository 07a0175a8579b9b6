"""Bench only: the PDF reader ragtrail had before PDFium (pypdf), kept to compare against in the same sandbox.

PDF text through pypdf, run in the sandboxed parser process (:mod:`ragtrail.sources.sandbox`).

Reasons a PDF is quarantined: ``corrupt_pdf`` (unreadable structure), ``encrypted_pdf`` (needs a
password), ``no_text_layer`` (pages but no text: a scan; OCR is not done), ``too_complex`` (pypdf's own
bomb limits tripped), plus the sandbox's ``parse_timeout``, ``parse_memory_limit`` and ``parse_crashed``.

Example::

    with SandboxedParser(timeout_s=30) as sandbox:  # ragtrail.sources.sandbox
        text = sandbox.parse(Path("report.pdf"), "pdf").text
"""

from __future__ import annotations


def extract_in_child(path: str) -> dict:
    """Runs in the sandbox child: the text of one PDF or a reason (see the module docstring)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" not in head:
        return {"reason": "corrupt_pdf", "message": "no %PDF- header: not a PDF file"}
    opened = _open(path)
    if isinstance(opened, dict):
        return opened
    reader, n_pages = opened
    if n_pages == 0:
        return {"reason": "corrupt_pdf", "message": "the PDF has no pages"}
    texts = _page_texts(reader, n_pages)
    if isinstance(texts, dict):
        return texts
    text = "\n\n".join(t for t in texts if t)
    if not text:
        return {"reason": "no_text_layer", "message": f"{n_pages} page(s) without a text layer (a scan? OCR is not done)"}
    # Lone surrogates from broken font maps cannot be stored as UTF-8.
    return {"text": text.encode("utf-8", "replace").decode("utf-8"), "pages": n_pages, "parser": "pypdf"}


def _open(path: str) -> tuple | dict:
    """``(reader, number of pages)`` (decrypted with the empty password if need be), or a reason."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, LimitReachedError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # an empty user password: encrypted only against editing
            except (DependencyError, NotImplementedError) as err:
                return {"reason": "encrypted_pdf", "message": f"encrypted with an unsupported scheme: {err}"}
            if not opened:
                return {"reason": "encrypted_pdf", "message": "the PDF is encrypted and needs a password"}
        n_pages = len(reader.pages)
    except LimitReachedError as err:
        return {"reason": "too_complex", "message": f"pypdf refused the file: {err}"}
    except FileNotDecryptedError as err:
        return {"reason": "encrypted_pdf", "message": str(err)}
    except MemoryError:
        raise
    except Exception as err:
        return {"reason": "corrupt_pdf", "message": f"{type(err).__name__}: {err}"[:500]}
    return reader, n_pages


def _page_texts(reader, n_pages: int) -> list[str] | dict:
    """Each page's text; a reason when pypdf refuses a page or no page can be read."""
    from pypdf.errors import LimitReachedError

    texts, failures, last_error = [], 0, ""
    for page in reader.pages:
        try:
            texts.append((page.extract_text() or "").strip())
        except LimitReachedError as err:
            return {"reason": "too_complex", "message": f"pypdf refused a page: {err}"}
        except MemoryError:
            raise
        except Exception as err:
            failures += 1
            last_error = f"{type(err).__name__}: {err}"[:300]
    if failures == n_pages:
        return {"reason": "corrupt_pdf", "message": f"none of {n_pages} pages could be read ({last_error})"}
    return texts
