"""A BEIR-style labelled set from two FAQs that Debian ships: real questions, their authors' answers as the corpus.

``prepare(root)`` fetches ``perl-doc`` and ``python3.11-doc`` with ``apt-get download`` (once; the .debs stay in
``root``), unpacks them with ``dpkg -x`` and builds, from

- the Perl FAQ (``perlfaq1.pod`` … ``perlfaq9.pod``): every ``=head2`` is a question, the text up to the next
  heading its answer — written as a Markdown file (verbatim blocks fenced, ``=item`` lists as lists, POD
  formatting codes as plain text or ``code``);
- the Python FAQ (``faq/*.html`` of the 3.11 documentation): every ``<section>`` whose heading ends in ``?``
  is a question, the rest of the section (without nested question sections) its answer — an HTML file,

``root/corpus/`` (one file per answer, named by FAQ and position — ``perl/perlfaq4-017.md``,
``python/programming-023.html`` — never by the question), and the labels:

- ``root/questions.jsonl``: ragtrail's query set (``{"id", "text", "relevant": [path]}``), for
  ``ragtrail ingest --eval-queries`` and ``bench/chunk_quality.py``;
- ``root/queries.jsonl`` and ``root/qrels/test.tsv``: the same in BEIR's layout (``_id``/``text``;
  ``query-id corpus-id score``).

How the labels were made: the question is the FAQ's own heading, verbatim but for markup, and its one relevant
document (grade 1) is the answer its authors wrote under it; the question text itself is not in the corpus.
A question asked twice (``What is Python?`` heads two Python FAQ pages) is left out, its answers stay as
distractors; so is an answer shorter than :data:`MIN_ANSWER_WORDS` words. One relevant document per query,
like BEIR's question-answer sets (FiQA, the StackExchange ones) at their sparsest.

Dense-mode quality through the gate's own search path: ``python bench/faqs.py --measure [--out F]`` parses
and chunks the corpus as ingest does (in process), embeds with the default model and backend, builds a
version on Qdrant Edge (the default store) and asks every question through
:func:`ragtrail.stages.evaluation.evaluate_collection` (documents ranked by their best chunk), giving
MRR@10 / nDCG@10 / recall@10 and latency; ``bench/chunk_quality.py --faqs`` gives the fp32 exact-cosine view.

Example::

    python bench/faqs.py .data/bench/faqs            # build the set only
    python bench/faqs.py --measure --out bench/results/faqs.json
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

PACKAGES = ("perl-doc", "python3.11-doc")
PERL_POD = Path("usr/share/perl")  # + <version>/pod/perlfaqN.pod
PYTHON_FAQ = Path("usr/share/doc/python3.11/html/faq")
RULES = 2  # bump when the extraction changes: a cached set is rebuilt
MIN_ANSWER_WORDS = 8

_CODE_N = [re.compile(rf"([A-Z]){'<' * n}\s+(.*?)\s+{'>' * n}", re.S) for n in (5, 4, 3, 2)]
_CODE_1 = re.compile(r"([A-Z])<([^<>]*)>")
_ENTITIES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _code(letter: str, body: str, markdown: bool) -> str:
    if letter == "E":
        return _ENTITIES.get(body, html.unescape(f"&{body};"))
    if letter in "XZ":
        return ""
    if letter == "L":
        if "|" in body:
            text = body.split("|", 1)[0]
        else:
            text = body if "://" in body else body.replace("/", " ").replace('"', "")
        return text.strip()
    if letter == "C" and markdown:
        return f"`{body}`"
    return body


def pod_inline(text: str, markdown: bool = True) -> str:
    """POD formatting codes (``C<…>``, ``C<< … >>``, ``L<…>``, ``E<gt>``…) as text (``code`` in Markdown)."""
    for pattern in _CODE_N:
        text = pattern.sub(lambda m: _code(m.group(1), m.group(2), markdown), text)
    while True:
        new = _CODE_1.sub(lambda m: _code(m.group(1), m.group(2), markdown), text)
        if new == text:
            return new
        text = new


def pod_to_markdown(pod: str) -> str:
    """One answer's POD as Markdown: verbatim paragraphs fenced, ``=item`` as list items, commands dropped."""
    out, code, item = [], [], None
    for para in re.split(r"\n\s*\n", pod.strip("\n")):
        if not para.strip():
            continue
        if para[0] in " \t":
            code.append(para)
            continue
        if code:
            out.append("```\n" + textwrap.dedent("\n\n".join(code)) + "\n```")
            code = []
        if para.startswith("=item"):
            label = para[5:].strip()
            if label in ("", "*"):
                item = "- "  # the next paragraph is the item's text
            elif label.rstrip(".").isdigit():
                item = f"{label.rstrip('.')}. "
            else:  # a named item (a definition list's term)
                out.append("- " + " ".join(pod_inline(label).split()))
            continue
        if para.startswith("="):
            continue
        text = " ".join(pod_inline(para).split())
        out.append(item + text if item else text)
        item = None
    if code:
        out.append("```\n" + textwrap.dedent("\n\n".join(code)) + "\n```")
    return "\n\n".join(out) + "\n"


def perl_answers(pod_dir: Path) -> list[tuple[str, str, str]]:
    """``(relative path, question, markdown answer)`` for every ``=head2`` of perlfaq1..9."""
    rows = []
    for n in range(1, 10):
        parts = re.split(r"^(=head[1-4][^\n]*)\n", (pod_dir / f"perlfaq{n}.pod").read_text(encoding="utf-8"),
                         flags=re.M)
        at = 0
        for head, body in zip(parts[1::2], parts[2::2], strict=True):
            if head.startswith("=head2"):
                at += 1
                body = body.split("\n=cut", 1)[0]
                rows.append((f"perl/perlfaq{n}-{at:03d}.md", " ".join(pod_inline(head[6:], False).split()),
                             pod_to_markdown(body)))
    return rows


def python_answers(faq_dir: Path) -> list[tuple[str, str, str]]:
    """``(relative path, question, html answer)`` for every question section of the Python FAQ."""
    import lxml.html

    rows = []
    for page in sorted(faq_dir.glob("*.html")):
        root = lxml.html.document_fromstring(page.read_text(encoding="utf-8"))  # UTF-8, whatever the page says
        at = 0
        for section in root.iter("section"):
            heads = section.xpath("./*[self::h1 or self::h2 or self::h3 or self::h4]")
            question = " ".join(heads[0].text_content().replace("¶", "").split()) if heads else ""
            if not question.endswith("?"):
                continue
            at += 1
            parts = []
            for child in section:
                if child is heads[0] or (child.tag == "section" and _is_question(child)):
                    continue
                for link in child.xpath(".//a[@class='headerlink']"):
                    link.drop_tree()
                parts.append(lxml.html.tostring(child, encoding="unicode"))
            rows.append((f"python/{page.stem}-{at:03d}.html", question,
                         "<html><body>\n" + "\n".join(parts) + "\n</body></html>\n"))
    return rows


def _is_question(section) -> bool:
    heads = section.xpath("./*[self::h1 or self::h2 or self::h3 or self::h4]")
    return bool(heads) and heads[0].text_content().replace("¶", "").strip().endswith("?")


def _words(text: str) -> int:
    return len(re.sub(r"<[^>]+>", " ", text).split())


def unpack(root: Path) -> Path:
    """The folder the two packages are unpacked into, downloading them when missing."""
    from pgdocs import unpack_deb

    out = root / "deb"
    if (out / PYTHON_FAQ).is_dir() and list((out / PERL_POD).glob("*/pod/perlfaq9.pod")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    for package in PACKAGES:
        unpack_deb(package, root, out)
    return out


def prepare(root: str | Path) -> tuple[Path, Path, int]:
    """Build (once) the corpus and its labels; returns ``(corpus, questions.jsonl, n_questions)``.

    Raises ``SystemExit`` when the packages cannot be downloaded (no Debian mirror reachable).
    """
    root = Path(root)
    try:
        unpacked = unpack(root)
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"faqs: cannot get {' and '.join(PACKAGES)} with apt-get download + dpkg -x: {err}") from err
    corpus, questions, marker = root / "corpus", root / "questions.jsonl", root / "corpus" / ".complete"
    if not (marker.exists() and marker.read_text() == str(RULES) and questions.exists()):
        shutil.rmtree(corpus, ignore_errors=True)
        pod_dir = sorted((unpacked / PERL_POD).glob("*/pod/perlfaq9.pod"))[-1].parent
        asked: dict[str, list[tuple[str, str]]] = {}
        for rel, question, answer in perl_answers(pod_dir) + python_answers(unpacked / PYTHON_FAQ):
            path = corpus / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(answer, encoding="utf-8")
            if _words(answer) >= MIN_ANSWER_WORDS:
                asked.setdefault(question.lower(), []).append((question, rel))
        rows = [{"id": f"faq{i:04d}", "text": hits[0][0], "relevant": [hits[0][1]]}
                for i, (_, hits) in enumerate(sorted(asked.items())) if len(hits) == 1]
        questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / "queries.jsonl").write_text("".join(json.dumps({"_id": r["id"], "text": r["text"]}) + "\n"
                                                    for r in rows))
        (root / "qrels").mkdir(exist_ok=True)
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{r['id']}\t{r['relevant'][0]}\t1\n" for r in rows))
        marker.write_text(str(RULES))
    n = sum(1 for line in questions.read_text().splitlines() if line.strip())
    return corpus, questions, n


def measure_dense(corpus: Path, questions: Path) -> dict:
    """Dense-mode MRR@10 / nDCG@10 / recall@10 of ``questions`` on ``corpus`` through the gate's search path."""
    import tempfile
    import time
    import uuid

    from ragtrail.core.settings import (
        DEFAULT_CHUNK_OVERLAP,
        DEFAULT_CHUNK_SIZE,
        DEFAULT_EMBED_BACKEND,
        DEFAULT_EMBEDDER,
    )
    from ragtrail.sources.parsing import parse_bytes
    from ragtrail.stages.chunking import chunk_document
    from ragtrail.stages.embedding import embed_texts, load_tokenizer, token_window
    from ragtrail.stages.evaluation import evaluate_collection, load_queries
    from ragtrail.store import Point, StoreSettings, open_store

    tok, window = load_tokenizer(), token_window()
    rows = []
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = str(path.relative_to(corpus))
        chunks = chunk_document(parse_bytes(rel, path.read_bytes()).text, tok, DEFAULT_CHUNK_SIZE,
                                DEFAULT_CHUNK_OVERLAP, window)
        rows += [(rel, i, c["text"]) for i, c in enumerate(chunks)]
    t0 = time.perf_counter()
    vectors = embed_texts([t for _, _, t in rows], DEFAULT_EMBEDDER, backend=DEFAULT_EMBED_BACKEND)
    embed_s = time.perf_counter() - t0
    queries = load_queries(questions)
    with tempfile.TemporaryDirectory() as tmp, open_store(StoreSettings(path=tmp, kind="edge")) as store:
        store.create("faqs__v1", vectors.shape[1], {"embedder": DEFAULT_EMBEDDER, "embed_backend": DEFAULT_EMBED_BACKEND})
        store.upsert("faqs__v1", [Point(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{d}#{i}")), vector=v.tolist(),
                                        payload={"doc_id": d, "chunk_index": i, "text": t})
                                  for (d, i, t), v in zip(rows, vectors, strict=True)])
        store.finish("faqs__v1")
        metrics, _ = evaluate_collection(store, "faqs__v1", queries, show_progress=False)
    return {"docs": len({d for d, _, _ in rows}), "chunks": len(rows), "queries": len(queries),
            "backend": DEFAULT_EMBED_BACKEND, "store": "edge", "embed_s": round(embed_s, 1),
            **{k: round(metrics[k], 4) for k in ("mrr_at_10", "ndcg_at_10", "recall_at_10")},
            "latency_p50_ms": round(metrics["latency_p50_ms"], 1), "latency_p95_ms": round(metrics["latency_p95_ms"], 1)}


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1] / ".data" / "bench" / "faqs"))
    ap.add_argument("--measure", action="store_true", help="dense-mode quality through the gate's search path")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    corpus, questions, n = prepare(args.root)
    if not args.measure:
        print(corpus, questions, n)
        return
    out = {"set": "faqs (bench/faqs.py): Perl FAQ + Python 3.11 FAQ, a question's one relevant document is its answer",
           "date": time_stamp(), "dense": measure_dense(corpus, questions)}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def time_stamp() -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


if __name__ == "__main__":
    main()
