"""The real-corpus benchmark: the PostgreSQL 15 manual as Debian ships it, with known-item questions.

``prepare(root, pages)`` fetches ``postgresql-doc-15`` with ``apt-get download`` (once; the .deb stays
in ``root``), unpacks it with ``dpkg -x``, copies a seeded sample of ``pages`` HTML pages into
``root/corpus_<pages>/`` and writes ``root/questions_<pages>.jsonl``: one known-item question per
sampled page that has a usable subtitle, whose only relevant document is that page.

The page's own question is what a reader would type: a reference page's one-line purpose (``SET — change a
run-time parameter`` asks ``change a run-time parameter``), else the page title without its section
number (``27.2. Log-Shipping Standby Servers`` asks ``Log-Shipping Standby Servers``); up to two
numbered sub-section titles of the page ask for it too. A question of a single word, or one that two
pages would ask, is left out.

Example::

    python bench/pgdocs.py .data/bench/pgdocs 300
"""

from __future__ import annotations

import html
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "postgresql-doc-15"
HTML_DIR = Path("usr/share/doc") / PACKAGE / "html"
QUESTION_RULES = 3  # bump when question_for changes: cached corpora are rebuilt
_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_PURPOSE = re.compile(r'<div class="refnamediv"><h2>.*?</h2><p>(.*?)</p>', re.S)
_TAGS = re.compile(r"<[^>]+>")
_SECTION = re.compile(r'<h3 class="title"[^>]*>((?:<[^>]+>)*[A-Z]?[\d.]+\d\.\s.*?)</h3>', re.S)
SECTIONS_PER_PAGE = 2
_NUMBER = re.compile(r"^(?:[A-Z]\.)?[\d.]+\s+|^Chapter \d+\.\s+|^Part [IVX]+\.\s+|^Appendix [A-Z]\.\s+")


def _clean(fragment: str) -> str:
    return " ".join(html.unescape(_TAGS.sub("", fragment)).split())


def question_for(page: str) -> str | None:
    """The known-item question for one page's HTML, or ``None`` when it has no usable one."""
    purpose = _PURPOSE.search(page)
    if purpose:
        text = _clean(purpose.group(1))
        text = text.split(" — ", 1)[1] if " — " in text else text
    else:
        title = _TITLE.search(page)
        text = _NUMBER.sub("", _clean(title.group(1))) if title else ""
    return text if len(text.split()) >= 2 else None


def section_questions(page: str) -> list[str]:
    """Known-item questions from a page's numbered sub-section titles (``27.2.1. Planning`` asks
    ``Planning``), at most :data:`SECTIONS_PER_PAGE`, first ones first; two words at least."""
    out = [_NUMBER.sub("", _clean(m.group(1))) for m in _SECTION.finditer(page)]
    return [q for q in out if len(q.split()) >= 2][:SECTIONS_PER_PAGE]


def unpack_deb(package: str, root: Path, out: Path) -> None:
    """Unpack a Debian package into ``out`` (``dpkg -x``), its .deb downloaded into ``root`` once
    (``apt-get download``: the only network this bench and its siblings, faqs and pdf_readers, use)."""
    root.mkdir(parents=True, exist_ok=True)
    debs = sorted(root.glob(f"{package}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", package], cwd=root, check=True, stdout=subprocess.DEVNULL)
        debs = sorted(root.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(out)], check=True)


def unpack(root: Path) -> Path:
    """The manual's HTML folder, downloading and unpacking the Debian package when missing."""
    out = root / "deb"
    html_dir = out / HTML_DIR
    if html_dir.is_dir() and any(html_dir.glob("*.html")):
        return html_dir
    shutil.rmtree(out, ignore_errors=True)
    unpack_deb(PACKAGE, root, out)
    return html_dir


def prepare(root: str | Path, pages: int, seed: int = 15) -> tuple[Path, Path, int]:
    """A corpus of ``pages`` sampled pages and its questions; returns ``(corpus, questions, n_questions)``.

    Raises ``SystemExit`` when the package cannot be downloaded (no Debian mirror reachable).
    """
    root = Path(root)
    try:
        html_dir = unpack(root)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"pgdocs: cannot get {PACKAGE} with apt-get download + dpkg -x: {err}") from err
    every = sorted(p.name for p in html_dir.glob("*.html"))
    chosen = sorted(random.Random(seed).sample(every, min(pages, len(every))))
    corpus = root / f"corpus_{len(chosen)}"
    questions = root / f"questions_{len(chosen)}.jsonl"
    marker = corpus / ".complete"
    stamp = f"{pages} {seed} {QUESTION_RULES}"
    if not (marker.exists() and marker.read_text() == stamp and questions.exists()):
        shutil.rmtree(corpus, ignore_errors=True)
        corpus.mkdir(parents=True)
        asked: dict[str, list[tuple[str, str]]] = {}
        for name in chosen:
            shutil.copyfile(html_dir / name, corpus / name)
            page = (html_dir / name).read_text(encoding="utf-8", errors="replace")
            for q in filter(None, [question_for(page), *section_questions(page)]):
                asked.setdefault(q.lower(), []).append((q, name))
        rows = [{"id": f"pg{i:04d}", "text": hits[0][0], "relevant": [hits[0][1]]}
                for i, (_, hits) in enumerate(sorted(asked.items())) if len(hits) == 1]
        questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
        marker.write_text(stamp)
    n = sum(1 for line in questions.read_text().splitlines() if line.strip())
    return corpus, questions, n


if __name__ == "__main__":
    print(prepare(sys.argv[1], int(sys.argv[2])))
