"""Chunks are measured in the embedder's tokens, never exceed its window, and overlap as configured."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrail.stages.chunking import chunk_document, point_id
from ragtrail.stages.embedding import load_tokenizer, token_window

TOK = load_tokenizer()
WINDOW = token_window()
PROSE = ("Airflow schedules tasks. Each task may retry after a delay!\n\n"
         "MLflow keeps runs; runs hold params, metrics and artifacts. ") * 30


def n_tokens(text: str) -> int:
    return len(TOK(text, add_special_tokens=False)["input_ids"])


def test_window_is_model_max_minus_special_tokens():
    """all-MiniLM-L6-v2 reads 256 tokens including [CLS] and [SEP]: 254 for content."""
    assert WINDOW == 254


@pytest.mark.parametrize("size,overlap", [(200, 32), (64, 0), (254, 100), (16, 4)])
def test_chunks_fit_and_cover_the_text(size, overlap):
    """Every chunk is ≤ size tokens by the model's own tokenizer, and together they cover every word."""
    chunks = chunk_document(PROSE, TOK, size, overlap, WINDOW)
    assert chunks and all(c["n_tokens"] == n_tokens(c["text"]) <= size for c in chunks)
    covered = set()
    for c in chunks:
        covered.update(range(c["char_start"], c["char_end"]))
    assert all(i in covered for i, ch in enumerate(PROSE.strip()) if not ch.isspace())


def test_consecutive_chunks_overlap():
    chunks = chunk_document(PROSE, TOK, 60, 20, WINDOW)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b["char_start"] < a["char_end"], "overlap requested but chunks are disjoint"


def test_cuts_prefer_sentence_ends():
    """With room to choose, a chunk ends at the end of a sentence rather than mid-sentence."""
    chunks = chunk_document(PROSE, TOK, 100, 0, WINDOW)
    assert all(c["text"].rstrip()[-1] in ".!?" for c in chunks[:-1])


def test_pathological_text_never_exceeds_the_window():
    """URLs, long unbroken strings, CJK and emoji are still cut to fit."""
    text = ("https://example.com/" + "a1b2" * 400 + " " + "漢字かな交じり文" * 200 + " 🙂" * 300 + " word" * 500)
    chunks = chunk_document(text, TOK, 254, 30, WINDOW)
    assert chunks and max(c["n_tokens"] for c in chunks) <= WINDOW


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=3000), st.integers(8, 254), st.integers(0, 7))
def test_any_text_chunks_within_the_window(text, size, overlap):
    """Property: whatever the text, no chunk is longer than the window and none is empty."""
    for c in chunk_document(text, TOK, size, overlap, WINDOW):
        assert 0 < c["n_tokens"] <= WINDOW and c["text"].strip()


def test_point_ids_are_deterministic_and_distinct():
    assert point_id("p", "a.md", 0, "h") == point_id("p", "a.md", 0, "h")
    assert len({point_id("p", "a.md", 0, "h"), point_id("q", "a.md", 0, "h"), point_id("p", "b.md", 0, "h"),
                point_id("p", "a.md", 1, "h"), point_id("p", "a.md", 0, "g")}) == 5


DOC = "# Backup and Restore\n\nIntro paragraph about backups.\n\n## SQL Dump\n\n" + PROSE + "\n\n## File System Level Backup\n\n" + PROSE


def test_chunks_carry_the_title_and_heading_path():
    """A chunk cut from the middle of a section is led by 'Title › Section', within the token budget."""
    chunks = chunk_document(DOC, TOK, 120, 16, WINDOW)
    assert chunks[0]["text"].startswith("# Backup and Restore")  # starts at the title: no path added
    inner = [c for c in chunks if c["char_start"] > DOC.index("## SQL Dump") + 20
             and c["char_end"] < DOC.index("## File System")]
    assert inner and all(c["text"].startswith("Backup and Restore › SQL Dump\n") for c in inner)
    last = chunks[-1]
    assert last["text"].startswith("Backup and Restore › File System Level Backup\n")
    assert all(c["n_tokens"] == n_tokens(c["text"]) <= 120 for c in chunks)
    assert DOC[last["char_start"]:last["char_end"]] in last["text"]  # offsets locate the passage itself


def test_heading_path_can_be_turned_off():
    assert not any("›" in c["text"] for c in chunk_document(DOC, TOK, 120, 16, WINDOW, with_path=False))
