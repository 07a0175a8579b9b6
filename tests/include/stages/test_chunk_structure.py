"""Chunks keep the document's structure: headings (never a ``#`` in code), sections, code blocks, tables,
lists and sentences, on real-shaped Markdown, HTML-extracted and code-heavy pages (issue 29, item 0)."""

from __future__ import annotations

import re

import pytest

from ragtrail.sources.parsing import parse_bytes
from ragtrail.stages.chunking import chunk_document, heading_paths
from ragtrail.stages.embedding import load_tokenizer, token_window

TOK = load_tokenizer()
WINDOW = token_window()
PROSE = ("The scheduler parses every file in the folder and queues the tasks whose upstream work is done. "
         "A worker picks a queued task, runs it and reports its state back to the metadata database. ")


def n_tokens(text: str) -> int:
    return len(TOK(text, add_special_tokens=False)["input_ids"])


def passages(doc: str, chunks: list[dict]) -> list[str]:
    return [doc[c["char_start"]:c["char_end"]] for c in chunks]


@pytest.mark.parametrize("fence,info", [("```", "bash"), ("~~~", ""), ("````", "shell title=setup.sh")])
def test_a_hash_comment_in_a_fenced_block_is_not_a_heading(fence, info):
    """`# Install` then a bash block holding `# create the venv`: every later chunk is under "Install"."""
    doc = (f"# Install\n\nCreate a virtual environment first.\n\n{fence}{info}\n# create the venv\n"
           f"python -m venv .venv\n# activate it\nsource .venv/bin/activate\n{fence}\n\n" + PROSE * 12)
    assert [p for _, p, *_ in heading_paths(doc)] == ["Install"]
    chunks = chunk_document(doc, TOK, 128, 0, WINDOW)
    assert len(chunks) > 2
    assert not any("create the venv\n" in c["text"].split("\n", 1)[0] + "\n" for c in chunks)
    assert all(c["text"].startswith("Install\n") for c in chunks[1:])


def test_indented_code_is_code_too():
    doc = "# Setup\n\nRun this:\n\n    # not a heading\n    make install\n\n" + PROSE * 8
    assert [p for _, p, *_ in heading_paths(doc)] == ["Setup"]
    assert all(c["text"].startswith("Setup\n") for c in chunk_document(doc, TOK, 100, 0, WINDOW)[1:])


def test_html_pre_blocks_keep_their_comments_out_of_the_heading_path():
    """An HTML page (through the extractor, as ingest parses it) with a shell example in a <pre>."""
    html = ("<html><head><title>Installation</title></head><body><h1>Installation</h1>"
            "<p>Run the following commands as root.</p><pre class='programlisting'># create the data folder\n"
            "mkdir -p /var/lib/app\n# start the server\napp serve --port 8080</pre>"
            + "".join(f"<p>{PROSE}</p>" for _ in range(8)) + "<h2>Upgrading</h2><p>" + PROSE + "</p></body></html>")
    text = parse_bytes("install.html", html.encode()).text
    assert [p for _, p, *_ in heading_paths(text)] == ["Installation", "Installation › Upgrading"]
    chunks = chunk_document(text, TOK, 128, 0, WINDOW)
    assert not any("start the server\n" in c["text"][:40] or "create the data folder\n" in c["text"][:40]
                   for c in chunks)
    assert chunks[-1]["text"].startswith("Installation\n## Upgrading")


SECTIONS = ["## Synopsis\n\nSET [ SESSION | LOCAL ] configuration_parameter TO value\n\n",
            "## Description\n\n" + PROSE * 2 + "\n\n",
            "## Parameters\n\n" + PROSE + "\n\n",
            "## Notes\n\nSetting a parameter lasts until the end of the session.\n\n"]


def test_a_section_that_fits_stays_whole_and_alone():
    """Four short sections of a reference page: each is one chunk, never run into the next one."""
    doc = "# SET\n\nSET — change a run-time parameter\n\n" + "".join(SECTIONS)
    chunks = chunk_document(doc, TOK, 254, 0, WINDOW)
    texts = passages(doc, chunks)
    for section in SECTIONS:
        assert section.strip() in texts, f"section {section[:20]!r} is not one chunk"
    assert all(t.count("## ") <= 1 for t in texts)
    by_heading = {t.split("\n")[0]: c["text"] for t, c in zip(texts, chunks, strict=True)}
    assert by_heading["## Description"].startswith("SET\n## Description")  # led by the page title


def test_a_long_section_is_cut_inside_and_the_next_starts_fresh():
    doc = "# Guide\n\n## Long\n\n" + PROSE * 10 + "\n\n## Short\n\nThe short section fits in one chunk.\n"
    texts = passages(doc, chunk_document(doc, TOK, 120, 16, WINDOW))
    assert "## Short\n\nThe short section fits in one chunk." in texts
    assert sum("## Long" in t for t in texts) == 1 and len(texts) > 3


CODE = "```python\n" + "".join(f"def step_{i}(ctx):\n    return ctx.run('task {i}')\n" for i in range(6)) + "```"


def test_a_code_block_that_fits_is_not_cut_mid_fence():
    """Prose then a code block that would cross the window's end: the chunk ends before the fence."""
    doc = "# Steps\n\n" + PROSE * 2 + "\n\n" + CODE + "\n\n" + PROSE * 3
    assert n_tokens(CODE) < 140
    texts = passages(doc, chunk_document(doc, TOK, 200, 0, WINDOW))
    assert any(CODE in t for t in texts), "the code block was cut"
    assert all(t.count("```") % 2 == 0 for t in texts)


def test_a_code_block_longer_than_a_window_is_cut_at_line_ends():
    code = "```sql\n" + "".join(f"INSERT INTO events (id, kind) VALUES ({i}, 'k{i}');\n" for i in range(120)) + "```"
    doc = "# Load\n\nThe load script.\n\n" + code + "\n\nAfter the load, vacuum the table.\n"
    chunks = chunk_document(doc, TOK, 200, 0, WINDOW)
    assert len(chunks) > 3 and all(c["n_tokens"] == n_tokens(c["text"]) <= 200 for c in chunks)
    for text in passages(doc, chunks):
        lines = [ln for ln in text.split("\n") if ln.startswith("INSERT")]
        assert all(ln.endswith(");") for ln in lines), "a code line was cut in the middle"


ABBREV = ("Ask Dr. Grey before you upgrade, e.g. to the v1.2 release, since the format changed. "
          "Back up the data, i.e. the whole folder, and check it with the vs. tool. ")


@pytest.mark.parametrize("size", [30, 40, 50, 60, 70])
def test_abbreviations_do_not_end_sentences(size):
    """Cuts land after "changed." or "tool.", never after "Dr.", "e.g.", "i.e.", "vs." or inside "v1.2"."""
    chunks = chunk_document(ABBREV * 12, TOK, size, 0, WINDOW)
    for c in chunks[:-1]:
        assert c["text"].rstrip().endswith(("changed.", "tool.")), c["text"][-40:]


TABLE = "| Parameter | Meaning |\n|---|---|\n" + "".join(
    f"| param_{i} | Sets limit {i}. The server reads it at start. Change it with SET. |\n" for i in range(6))
LIST = "".join(f"- Step {i}: stop the service. Copy the folder. Start it again.\n" for i in range(6))


@pytest.mark.parametrize("block", [TABLE, LIST], ids=["table", "list"])
def test_tables_and_lists_that_fit_are_not_cut(block):
    doc = "# Reference\n\n" + PROSE * 2 + "\n\n" + block + "\n" + PROSE * 2
    assert n_tokens(block) < 180
    texts = passages(doc, chunk_document(doc, TOK, 200, 0, WINDOW))
    assert any(block.strip() in t for t in texts), "the block was cut"


def test_long_tables_are_cut_between_rows():
    table = "| Parameter | Meaning |\n|---|---|\n" + "".join(
        f"| param_{i} | Sets limit {i}. The server reads it at start. |\n" for i in range(40))
    doc = "# Reference\n\n" + table
    for text in passages(doc, chunk_document(doc, TOK, 100, 0, WINDOW)):
        rows = [ln for ln in text.split("\n") if "param_" in ln]
        assert all(re.fullmatch(r"\| param_\d+ \| .* \|", r) for r in rows), "a row was cut"


def test_chunks_are_stable_and_fit_with_their_prefix():
    doc = "# SET\n\n" + "".join(SECTIONS) + CODE + "\n\n" + TABLE
    a, b = chunk_document(doc, TOK, 64, 8, WINDOW), chunk_document(doc, TOK, 64, 8, WINDOW)
    assert a == b and all(c["n_tokens"] == n_tokens(c["text"]) <= 64 for c in a)


HOSTILE = {"unclosed fences": "```\n# not a heading\n" * 400, "deep quotes": ">" * 3000 + " deep\n",
           "deep lists": "- " * 3000 + "x\n" + "".join("  " * (i % 40) + "- item\n" for i in range(600)),
           "wide table": "|" + "a|" * 800 + "\n|" + "-|" * 800 + "\n" + ("|" + "b|" * 800 + "\n") * 3,
           "a long fence": "`" * 5000 + "\n" + "code line\n" * 500, "only headings": "## H\n" * 2000}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_structure_still_fits_and_covers(name):
    """Unclosed fences, nesting past markdown-it's limit, huge tables: every word lands in a chunk that fits."""
    doc = HOSTILE[name]
    chunks = chunk_document(doc, TOK, 254, 0, WINDOW)
    assert chunks and all(0 < c["n_tokens"] <= WINDOW for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c["char_start"], c["char_end"]))
    assert all(i in covered for i, ch in enumerate(doc) if not ch.isspace())
