"""Sections 4 and 5 of ``make bench-parsers`` (bench/parsers.py): PDF readers, and the ingest stage serial
against parallel with each reader.

pypdf runs in the same sandbox child as pypdfium2: a folder on the child's PYTHONPATH (:func:`baseline`) holds
the pypdf reader ragtrail had before, taken from git (``include/ragtrail/sources/pdf.py`` at :data:`PYPDF_REV`,
the last commit that read PDFs with pypdf), and a ``sitecustomize`` pointing the child's PDF handler at it
(:func:`reader`).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / ".data" / "bench" / "pypdf_baseline"
PYPDF_REV = "fb200d5"  # the last commit whose include/ragtrail/sources/pdf.py read PDFs with pypdf
SITECUSTOMIZE = """from ragtrail.sources import parsing

parsing.PACKAGED_HANDLERS["pdf"] = "pypdf_baseline:extract_in_child"
"""
READERS = ("pypdf", "pypdfium2")
MANUALS = {"gnuplot": ("gnuplot-doc", "usr/share/doc/gnuplot/gnuplot.pdf"),
           "octave": ("octave-doc", "usr/share/doc/octave/octave.pdf")}
_WORD = re.compile(r"\w+")
_HYPHEN_EOL = re.compile(r"\w-\n\w")


def manual(name: str, root: Path = REPO / ".data" / "bench" / "pdf") -> Path:
    """A real PDF manual from a Debian docs package, downloaded and unpacked once."""
    package, inner = MANUALS[name]
    path = root / "x" / inner
    if not path.exists():
        from pgdocs import unpack_deb

        unpack_deb(package, root, root / "x")
    return path


def baseline() -> Path:
    """The folder with the pypdf reader (from git) and the ``sitecustomize`` that makes a sandbox child use it."""
    module = BASELINE / "pypdf_baseline.py"
    if not module.exists():
        BASELINE.mkdir(parents=True, exist_ok=True)
        old = subprocess.run(["git", "show", f"{PYPDF_REV}:include/ragtrail/sources/pdf.py"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        (BASELINE / "sitecustomize.py").write_text(SITECUSTOMIZE)
        module.write_text(old)
    return BASELINE


@contextmanager
def reader(name: str):
    """Sandbox children started inside read PDFs with ``name`` (the shipped one is pypdfium2)."""
    old = os.environ.get("PYTHONPATH")
    if name == "pypdf":
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(baseline()), old]))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _sandboxed_text(path: Path, name: str) -> tuple[float, str, str]:
    """Seconds to read ``path`` in a warm sandbox child (started beforehand), its text and parser."""
    from ragtrail.sources.sandbox import SandboxedParser

    with reader(name), SandboxedParser() as sandbox:
        sandbox._start()
        started = time.perf_counter()
        doc = sandbox.parse(path, "pdf")
        return time.perf_counter() - started, doc.text, doc.parser


def _page_words(path: Path) -> dict[str, list[set[str]]]:
    """Each page's words by each reader (in this process: the text does not depend on the sandbox)."""
    import sys

    from ragtrail.sources import pdf as pdfium_reader

    sys.path.insert(0, str(baseline()))
    import pypdf_baseline

    reader_, n = pypdf_baseline._open(str(path))
    pypdf_pages = pypdf_baseline._page_texts(reader_, n)
    with pdfium_reader._open(str(path)) as doc:
        pdfium_pages = pdfium_reader._page_texts(doc, len(doc))
    return {"pypdf": [set(_WORD.findall(t.replace("-\n", ""))) for t in pypdf_pages],
            "pypdfium2": [set(_WORD.findall(t)) for t in pdfium_pages]}


def _quality(text: str, pages: int) -> dict:
    words = _WORD.findall(text)
    return {"chars": len(text), "words": len(words), "words_per_page": round(len(words) / pages, 1),
            "hyphenated_line_ends": len(_HYPHEN_EOL.findall(text)), "replacement_chars": text.count("\ufffd"),
            "ligature_chars": sum(text.count(c) for c in "\ufb00\ufb01\ufb02\ufb03\ufb04")}


def pdf_readers(rounds: int) -> dict:
    out = {}
    for name in MANUALS:
        path = manual(name)
        seconds: dict[str, list[float]] = {r: [] for r in READERS}
        texts = {}
        for r in range(rounds):
            for which in (READERS if r % 2 == 0 else READERS[::-1]):
                took, texts[which], parser = _sandboxed_text(path, which)
                assert parser == which, parser
                seconds[which].append(round(took, 3))
        per_page = _page_words(path)
        pages = len(per_page["pypdf"])
        overlap = [len(a & b) / len(a | b) for a, b in zip(per_page["pypdf"], per_page["pypdfium2"], strict=True) if a | b]
        med = {k: statistics.median(v) for k, v in seconds.items()}
        out[name] = {"pages": pages, "bytes": path.stat().st_size, "seconds": seconds,
                     "ms_per_page": {k: round(1000 * v / pages, 2) for k, v in med.items()},
                     "speedup": round(med["pypdf"] / med["pypdfium2"], 1),
                     "quality": {k: _quality(t, pages) for k, t in texts.items()},
                     "page_word_overlap": {"median": round(statistics.median(overlap), 4),
                                           "min": round(min(overlap), 4),
                                           "pages_under_0.95": sum(o < 0.95 for o in overlap)}}
    return out


def _bm25_ranks(pages: list[list[str]], query: list[str], k1: float = 1.2, b: float = 0.75) -> list[int]:
    """Page indexes by BM25 score of ``query``, best first."""
    import math
    from collections import Counter

    counts = [Counter(p) for p in pages]
    avg = sum(map(len, pages)) / len(pages)
    df = Counter(w for c in counts for w in c)
    def score(i: int) -> float:
        c, n = counts[i], len(pages[i])
        return sum(math.log(1 + (len(pages) - df[w] + 0.5) / (df[w] + 0.5)) * c[w] * (k1 + 1)
                   / (c[w] + k1 * (1 - b + b * n / avg)) for w in query if w in c)
    return sorted(range(len(pages)), key=score, reverse=True)


def pdf_retrieval() -> dict:
    """Each bookmark's title as a query over each reader's pages (BM25): is the page it points at found?

    Cheap evidence that the text retrieves as well: MRR@10 and hits@10 of the bookmarked page.
    """
    import sys

    import pypdfium2 as pdfium

    from ragtrail.sources import pdf as pdfium_reader

    sys.path.insert(0, str(baseline()))
    import pypdf_baseline

    out = {}
    for name in MANUALS:
        path = manual(name)
        with pdfium.PdfDocument(str(path)) as doc:
            marks = [(m.get_title(), m.get_dest().get_index()) for m in doc.get_toc() if m.get_dest() is not None]
            pdfium_pages = pdfium_reader._page_texts(doc, len(doc))
        reader_, n = pypdf_baseline._open(str(path))
        texts = {"pypdf": [t.replace("-\n", "") for t in pypdf_baseline._page_texts(reader_, n)],
                 "pypdfium2": pdfium_pages}
        queries = [(q, page) for title, page in marks if (q := _WORD.findall(title.lower()))]
        out[name] = {"queries": len(queries)}
        for which, pages in texts.items():
            tokens = [_WORD.findall(t.lower()) for t in pages]
            ranks = [_bm25_ranks(tokens, q)[:10] for q, _ in queries]
            hits = [r.index(page) + 1 if page in r else None for r, (_, page) in zip(ranks, queries, strict=True)]
            out[name][which] = {"mrr@10": round(sum(1 / h for h in hits if h) / len(hits), 4),
                                "hits@10": round(sum(h is not None for h in hits) / len(hits), 4)}
    return out


class _PeakRss:
    """The peak RSS (MB) of this process and all its children, sampled every 20 ms in a thread."""

    def __init__(self):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        import psutil

        while not self._stop.wait(0.02):
            total = 0
            for p in (self.proc, *self.proc.children(recursive=True)):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _ingest_once(corpus: Path, workers: int, which: str) -> dict:
    import resource

    from ragtrail.stages import ingest

    def cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    with tempfile.TemporaryDirectory() as work, reader(which), _PeakRss() as rss:
        cpu0, started = cpu(), time.perf_counter()
        out = ingest.ingest_source(str(corpus), work, parse_workers=workers)
        wall, used = time.perf_counter() - started, cpu() - cpu0
    return {"wall_s": round(wall, 2), "cpu_s": round(used, 2), "peak_rss_mb": round(rss.peak / 2**20),
            "docs": out["docs"]}


def ingest_modes(rounds: int, pages: int | None) -> dict:
    """The PostgreSQL manual's HTML pages plus the gnuplot manual, serial vs parallel, pypdf vs pypdfium2."""
    import pgdocs

    from ragtrail.core.cpus import usable_cpus

    html_dir = pgdocs.unpack(REPO / ".data" / "bench" / "pgdocs")
    corpus = Path(tempfile.mkdtemp(prefix="ingest-modes-"))
    for page in sorted(html_dir.glob("*.html"))[:pages]:
        shutil.copy(page, corpus / page.name)
    shutil.copy(manual("gnuplot"), corpus / "gnuplot.pdf")
    width = usable_cpus()
    modes = [(w, r) for w in (1, width) for r in READERS]
    runs: dict[str, list[dict]] = {f"{w}x{r}": [] for w, r in modes}
    for n in range(rounds):
        for w, r in (modes if n % 2 == 0 else modes[::-1]):
            runs[f"{w}x{r}"].append(_ingest_once(corpus, w, r))
    shutil.rmtree(corpus)
    median = {k: {m: statistics.median(x[m] for x in v) for m in ("wall_s", "cpu_s", "peak_rss_mb")}
              for k, v in runs.items()}
    before, after = median["1xpypdf"], median[f"{width}xpypdfium2"]
    return {"html_pages": len(list(html_dir.glob("*.html"))[:pages]), "pdf": "gnuplot.pdf (311 pages)",
            "workers": width, "rounds": rounds, "runs": runs, "median": median,
            "before_to_after": {"wall": round(before["wall_s"] / after["wall_s"], 2),
                                "cpu": round(before["cpu_s"] / after["cpu_s"], 2),
                                "peak_rss": round(after["peak_rss_mb"] / before["peak_rss_mb"], 2)}}
