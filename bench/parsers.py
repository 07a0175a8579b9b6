"""What the parser budgets cost, and how the HTML extractor scales: ``make bench-parsers``.

1. **Budget overhead on real documents.** The ingest stage reads the PostgreSQL manual's HTML pages
   (the real-docs corpus of ``make bench CORPUS=pgdocs``) twice per round, alternating: as shipped (every
   file parsed in the sandboxed child under its budget) and with the parsers called in the task's own
   process (no budget; what ingest did for text and HTML before). The overhead is the median difference
   as a share of the in-process stage.
2. **Linear HTML extraction.** ``html_to_markdown`` on pages deep (nested ``<div>``), wide (siblings) and
   long (one paragraph) at n, 2n and 4n; the fitted exponent b of ``time = a * n**b`` (1 = linear).
3. **Each hostile shape** of ``tests/pathological.py`` through the sandbox with the default budget: its
   outcome and seconds.

4. **PDF readers in the sandbox.** Real manuals from Debian packages (``gnuplot-doc``: 311 pages,
   ``octave-doc``: 1,158 pages; ``apt-get download`` + ``dpkg -x``), each read by pypdfium2 (what ragtrail
   uses) and by pypdf (what it used before, from git: ``bench/pdf_readers.baseline`` puts it in the child), alternating:
   seconds per page, and the text compared page by page (words, hyphenated line ends, word overlap);
   ``pdf_retrieval``: each bookmark's title as a BM25 query over each reader's pages.
5. **The ingest stage serial and parallel, with each PDF reader.** The PostgreSQL manual's HTML pages
   plus the gnuplot manual, ingested with one parser child and with one per usable CPU, alternating:
   wall, CPU (this process and its children) and the peak RSS of the process tree (sampled).

Results go to ``bench/results/parsers.json`` (``--only`` refreshes some sections and keeps the others). Timings are this machine's: read them as ratios and slopes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))


def _in_process_stream(self, jobs, ahead=0):
    """``ParserPool.parse_stream`` without the sandbox: every parser in this process, no budget."""
    from ragtrail.sources.parsing import parse_local

    for job in jobs:
        yield job, (parse_local(job.name, job.path, job.table) if job.path is not None else iter(()))


def _ingest_once(corpus: Path, work: Path, in_process: bool) -> tuple[float, float]:
    """Wall and CPU seconds (this process and its children) of one ingest of ``corpus``."""
    import resource

    from ragtrail.sources.parser_pool import ParserPool
    from ragtrail.stages import ingest

    def cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    original = ParserPool.parse_stream
    if in_process:
        ParserPool.parse_stream = _in_process_stream
    try:
        cpu0, started = cpu(), time.perf_counter()
        ingest.ingest_source(str(corpus), work, parse_workers=1)  # one sandbox child against this process
        return time.perf_counter() - started, cpu() - cpu0
    finally:
        ParserPool.parse_stream = original


def budget_overhead(rounds: int, pages: int | None) -> dict:
    import shutil

    import pgdocs

    html_dir = pgdocs.unpack(REPO / ".data" / "bench" / "pgdocs")
    corpus = Path(tempfile.mkdtemp(prefix="parsers-corpus-"))
    for page in sorted(html_dir.glob("*.html"))[:pages]:
        shutil.copy(page, corpus / page.name)
    times: dict[str, list[float]] = {"sandboxed": [], "in_process": []}
    cpu: dict[str, list[float]] = {"sandboxed": [], "in_process": []}
    for r in range(rounds):
        for mode in (("sandboxed", "in_process") if r % 2 == 0 else ("in_process", "sandboxed")):
            with tempfile.TemporaryDirectory() as work:
                wall, used = _ingest_once(corpus, Path(work), mode == "in_process")
            times[mode].append(round(wall, 2))
            cpu[mode].append(round(used, 2))
    shutil.rmtree(corpus)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {"files": len(list(html_dir.glob("*.html"))[:pages]), "rounds": rounds, "wall_s": times, "cpu_s": cpu,
            "median_wall_s": med, "median_cpu_s": med_cpu,
            "wall_overhead_pct": round(100 * (med["sandboxed"] - med["in_process"]) / med["in_process"], 1),
            "cpu_overhead_pct": round(100 * (med_cpu["sandboxed"] - med_cpu["in_process"]) / med_cpu["in_process"], 1)}


def _pages(shape: str, n: int) -> str:
    if shape == "deep":
        return "<html><body>" + "<div>" * n + "text" + "</div>" * n + "</body></html>"
    if shape == "wide":
        return "<html><body>" + "<span>x</span>" * n + "</body></html>"
    return "<html><body><p>" + "lorem ipsum " * n + "</p></body></html>"


def html_scaling() -> dict:
    from ragtrail.sources.html_extract import html_to_markdown

    sizes = {"deep": 25_000, "wide": 250_000, "long": 2_500_000}
    out = {}
    for shape, n in sizes.items():
        points = []
        for k in (1, 2, 4):
            page = _pages(shape, n * k)
            started = time.perf_counter()
            html_to_markdown(page)
            points.append((n * k, time.perf_counter() - started))
        xs, ys = [math.log(p[0]) for p in points], [math.log(p[1]) for p in points]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        out[shape] = {"n_s": [[n_, round(t, 3)] for n_, t in points], "exponent": round(slope, 2)}
    return out


def hostile_shapes() -> dict:
    import pathological

    from ragtrail.sources.parsed import ParseError
    from ragtrail.sources.sandbox import SandboxedParser

    out = {}
    with tempfile.TemporaryDirectory() as tmp, SandboxedParser() as sandbox:
        for name, make in pathological.HOSTILE.items():
            path = make(Path(tmp) / name)
            started = time.perf_counter()
            outcomes = list(sandbox.parse_all(name, path))
            errors = [o.reason for o in outcomes if isinstance(o, ParseError)]
            out[name] = {"seconds": round(time.perf_counter() - started, 2), "documents": len(outcomes) - len(errors),
                         "refused": errors}
            path.unlink()
    return out


def main() -> None:
    from pdf_readers import ingest_modes, pdf_readers, pdf_retrieval

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", type=int, default=None, help="the first N pages of the manual (default: all)")
    parser.add_argument("--only", nargs="*", default=None, help="the sections to run (default: all)")
    args = parser.parse_args()
    path = REPO / "bench" / "results" / "parsers.json"
    results: dict = json.loads(path.read_text()) if args.only and path.exists() else {}
    sections = {"html_scaling": html_scaling, "hostile_shapes": hostile_shapes,
                "budget_overhead": lambda: budget_overhead(args.rounds, args.pages),
                "pdf_readers": lambda: pdf_readers(args.rounds), "pdf_retrieval": pdf_retrieval,
                "ingest_modes": lambda: ingest_modes(args.rounds, args.pages)}
    for name, measure in sections.items():
        if args.only and name not in args.only:
            continue
        results[name] = measure()
        print(name, json.dumps(results[name], indent=2), flush=True)
        path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
