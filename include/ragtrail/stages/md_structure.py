"""A document's Markdown structure, for the chunker: sections, blocks, code, list items, tables, sentences.

Parsed with markdown-it-py (CommonMark block rules plus GFM tables; inline markup is not parsed), so a
``#`` line inside a fenced (```` ``` ```` / ``~~~``, any length, any info string) or indented code block is
code, never a heading. Text from every source arrives here as Markdown-ish text: Markdown files as
they are, HTML pages through :mod:`ragtrail.sources.html_extract` (``#`` headings, ``- `` items,
fenced ``<pre>``), plain text as paragraphs.

:func:`break_scores` rates each place between two tokens as a cut, from :data:`SECTION` (a heading
starts there) down to 0 (inside a word); :func:`guards` names, for a token inside a code block, table,
list or list item that fits a chunk, where that block starts, so a cut there can move back to before it.

Example::

    s = parse("# Install\\n\\n```bash\\n# create the venv\\n```\\n")
    [h.name for h in s.headings]  # ['Install']
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

SECTION, BLOCK, ITEM, LINE, WORD = 6, 5, 4, 3, 1
_CODE_LINE = 2
_NEWLINE = re.compile(r"\r\n?|\n")  # markdown-it's own line breaks, so its line numbers map to offsets
_SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*$")
# Words a period follows without ending the sentence (lower case, without the period).
ABBREVIATIONS = frozenset(
    "e.g i.e etc vs cf dr mr mrs ms prof st jr sr inc ltd co corp no nos fig figs approx al eq resp incl "
    "esp ca viz sec ch vol pp ed cap art dept est min max".split())
_BLOCK_TYPES = frozenset({"paragraph_open", "bullet_list_open", "ordered_list_open", "table_open",
                          "blockquote_open", "fence", "code_block", "hr", "html_block", "heading_open"})
_ATOMIC_TYPES = frozenset({"fence", "code_block", "table_open", "bullet_list_open", "ordered_list_open", "list_item_open"})


@dataclass
class Heading:
    start: int  # first character of the heading's line (after its indent)
    end: int  # end of its text line
    level: int
    name: str


@dataclass
class Structure:
    headings: list[Heading] = field(default_factory=list)  # top-level headings with text, in order
    marks: list[tuple[int, int]] = field(default_factory=list)  # (char offset, score): where blocks start
    code: list[tuple[int, int]] = field(default_factory=list)  # char ranges of code blocks
    atomic: list[tuple[int, int]] = field(default_factory=list)  # code blocks, tables, list items


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"maxNesting": 20}).enable("table")
    md.core.ruler.disable(["inline", "text_join"])  # block structure only: linear, and no inline markup work
    return md


def parse(text: str) -> Structure:
    """The block structure of ``text``; offsets are character offsets into ``text`` itself."""
    starts = [0, *(m.end() for m in _NEWLINE.finditer(text))]

    def at(line: int) -> int:
        return starts[line] if line < len(starts) else len(text)

    out = Structure()
    tokens = _parser().parse(text)
    after_heading = False
    for i, tok in enumerate(tokens):
        if tok.map is None:
            continue
        a, b = tok.map
        begin = at(a)
        begin += len(text[begin:at(a + 1)]) - len(text[begin:at(a + 1)].lstrip(" \t"))
        if tok.type in _ATOMIC_TYPES:
            out.atomic.append((begin, at(b)))
        if tok.type in ("fence", "code_block"):
            out.code.append((begin, at(b)))
        if tok.type == "list_item_open":
            out.marks.append((begin, ITEM))
        if tok.level != 0 or tok.type not in _BLOCK_TYPES:
            continue
        if tok.type != "heading_open":
            out.marks.append((begin, BLOCK))
            after_heading = False
            continue
        # A heading right under another (no text between) opens no new chunk: it leads the same one.
        out.marks.append((begin, BLOCK if after_heading else SECTION))
        after_heading = True
        _add_heading(out, text, tok, tokens[i + 1] if i + 1 < len(tokens) else None, begin, at(b))
    out.marks.sort()
    return out


def _add_heading(out: Structure, text: str, tok, inline, begin: int, end: int) -> None:
    name = " ".join(inline.content.split()) if inline is not None else ""
    if name:
        while end > begin and text[end - 1] in "\r\n":
            end -= 1
        out.headings.append(Heading(begin, end, int(tok.tag[1]), name))


def _sentence_end(text: str, prev: tuple[int, int], nxt_start: int) -> bool:
    """Whether the token ``prev`` ends a sentence: not after an abbreviation, not before a lower-case word."""
    if not _SENTENCE_END.search(text[prev[0]:prev[1]]):
        return False
    follow = text[nxt_start:nxt_start + 1]
    if follow.islower():
        return False
    if text[prev[0]:prev[1]].rstrip("\"')]") != ".":
        return True
    head = text[max(0, prev[1] - 40):prev[1]]  # bounded look-back: linear on any input
    word = head.split()[-1] if head.split() else ""
    word = word.strip("\"'()[]").rstrip(".").lower()
    parts = word.split(".")
    if len(word) <= 1 or word in ABBREVIATIONS:
        return False
    return not (len(parts) > 1 and all(p.isalpha() and len(p) <= 2 for p in parts))  # e.g. "u.s."


def break_scores(text: str, offsets: list[tuple[int, int]], structure: Structure) -> list[int]:
    """Score each token position ``i`` as a place to cut before token ``i`` (:data:`SECTION` … 0 mid-word)."""
    scores = [SECTION]
    marks, code = structure.marks, structure.code
    mi = ci = 0
    for i in range(1, len(offsets)):
        prev_end, here = offsets[i - 1][1], offsets[i][0]
        score = 0
        while mi < len(marks) and marks[mi][0] <= here:
            if marks[mi][0] >= prev_end:
                score = max(score, marks[mi][1])
            mi += 1
        while ci < len(code) and code[ci][1] <= here:
            ci += 1
        in_code = ci < len(code) and code[ci][0] < here
        gap = text[prev_end:here]
        if not gap:
            pass
        elif in_code:
            score = max(score, LINE if gap.count("\n") > 1 else _CODE_LINE if "\n" in gap else WORD)
        elif "\n\n" in gap or "\n\r\n" in gap:
            score = max(score, ITEM)
        elif "\n" in gap or _sentence_end(text, offsets[i - 1], here):
            score = max(score, LINE)
        else:
            score = max(score, WORD)
        scores.append(score)
    return scores


def guards(structure: Structure, token_starts: list[int], size: int) -> list[int]:
    """Per token index: the index where the outermost code block / table / list item holding it starts,
    when that block is at most ``size`` tokens (a cut inside it can move to before it); else -1."""
    n = len(token_starts)
    out = [-1] * n
    spans = []
    for a, b in structure.atomic:
        bs, be = bisect_right(token_starts, a - 1), bisect_right(token_starts, b - 1)
        if be - bs <= size and be > bs:
            spans.append((bs, -be))
    spans.sort()
    filled = 0
    for bs, neg_be in spans:  # outer spans first; nested or disjoint, so each token is set once
        be = -neg_be
        for j in range(max(bs + 1, filled), be):
            out[j] = bs
        filled = max(filled, be)
    return out
