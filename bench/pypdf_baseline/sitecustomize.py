"""Bench only: with this folder on PYTHONPATH, a sandbox child reads PDFs with pypdf, as ragtrail did before
PDFium (``bench/parsers.py`` compares the two in the same sandbox)."""

from ragtrail.sources import parsing

parsing.PACKAGED_HANDLERS["pdf"] = "pypdf_baseline:extract_in_child"
