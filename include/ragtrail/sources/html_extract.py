"""The main content of an HTML page as Markdown-like text: boilerplate out, structure kept.

Navigation, page headers and footers are the same on every page of a site: embedded, they cost
tokens and make every page look a little alike. They are dropped by structure — ``<nav>``,
``<header>``, ``<footer>``, ``<aside>``, ARIA navigation / banner / contentinfo roles, and the classes
documentation generators give them (DocBook's ``navheader`` / ``navfooter``, Sphinx's ``related`` and
``sphinxsidebar``, breadcrumbs, skip links). What is left keeps its shape: headings become ``#`` lines
(so the chunker can carry the heading path into every chunk), list items ``- `` lines, table rows one
line each with ``|`` between cells, and inline markup (``<code>``, ``<a>``, ``<em>``) stays inside its
sentence instead of being broken onto lines of its own, and ``<pre>`` blocks are fenced with ```` ``` ````
lines (their lines kept as they are), so a ``# comment`` in a shell example is code, not a heading.

One pass, no tree: lxml's HTML parser (libxml2, the parser BeautifulSoup's ``"lxml"`` builder drives)
streams start / end / text events into :class:`_Extractor`, which writes the output as they come. Every
event costs O(1), so time and memory are linear in the page's size whatever its depth or width (a tree
walk that appends to or searches up the tree per element is quadratic on a page nested 100,000 deep).
The output is the same text the earlier BeautifulSoup version made, string for string.

Example::

    html_to_markdown("<title>SET</title><div class='navheader'>Prev Next</div><h1>SET</h1><p>Use <code>SET</code>.</p>")
    # '# SET\\n\\nUse SET.'
"""

from __future__ import annotations

import re

DROP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav", "header", "footer", "aside",
                       "form", "button", "iframe"})
DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
# Class names (whole words) of navigation blocks in common documentation generators.
DROP_CLASSES = re.compile(r"\b(navheader|navfooter|breadcrumbs?|sphinxsidebar|related|skip-?link|"
                          r"site-(?:header|footer|nav)|headerlink|edit-?this-?page)\b", re.I)
BLOCKS = frozenset({"p", "div", "section", "article", "main", "pre", "blockquote", "table", "thead", "tbody", "tr",
                    "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "hr", "br", "address", "details", "summary"})
_PARAGRAPH_END = frozenset({"p", "pre", "table", "ul", "ol", "dl", "blockquote"})  # end with a blank line
HEADINGS = {f"h{i}": i for i in range(1, 7)}
_PRESERVE = frozenset({"pre", "textarea"})  # whitespace-only text is kept as is inside these
_HIDDEN_TEXT = frozenset({"rt", "rp"})  # ruby annotations: not part of the running text
_ASCII_SPACE = str.maketrans("", "", " \n\t\f\r")
_SPACE = re.compile(r"\s+")
FENCE = "```"  # around each <pre>
_FENCE_END = f"\n{FENCE}\n\n"
_BACKTICKS = re.compile(r"`{3,}")
_FEED = 512  # bytes per feed() call, as BeautifulSoup feeds lxml


def html_to_markdown(html: str) -> str:
    """Main-content text of ``html`` with ``#`` headings and ``- `` list items (see the module doc).

    The page ``<title>`` leads as a level-1 heading unless the page's first heading already says it.
    """
    extractor = _parse(html)
    body = _strip_cell_ends(extractor.body_text())
    body = re.sub(r"^- *\n\s*", "- ", body, flags=re.M)  # an item whose text sits in its own block
    title, first_heading = extractor.title_text(), extractor.first_heading
    if title and (first_heading is None or title.lower() not in first_heading.lower()):
        body = f"# {title}\n\n{body}"
    return body


def _parse(html: str) -> _Extractor:
    from lxml import etree

    for markup in (html, html.encode("utf-8")):  # as BeautifulSoup: the str first, its UTF-8 bytes if refused
        extractor = _Extractor()
        parser = etree.HTMLParser(target=extractor, recover=True, huge_tree=True, encoding=None if isinstance(markup, str) else "utf-8")
        try:
            for start in range(0, max(len(markup), 1), _FEED):
                parser.feed(markup[start:start + _FEED])
            parser.close()
            return extractor
        except (UnicodeDecodeError, LookupError, etree.ParserError):
            continue
    return _Extractor()


def _strip_cell_ends(body: str) -> str:
    """Drop the separator after a row's last cell (``a | b | \\n`` → ``a | b\\n``), line by line.

    The same as ``re.sub(r"[ \\t]*\\|[ \\t]*\\n", "\\n", body)`` without its quadratic backtracking over a
    long run of blanks.
    """
    lines = body.split("\n")
    for i in range(len(lines) - 1):  # the last line has no line break after it
        line = lines[i].rstrip(" \t")
        if line.endswith("|"):
            lines[i] = line[:-1].rstrip(" \t")
    return "\n".join(lines)


class _Extractor:
    """An lxml parser target: turns the event stream into the output text as it arrives."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.first_heading: str | None = None
        self._pending: list[str] = []  # text events since the last tag, joined into one string
        self._ends: list[str | None] = []  # per open element: what to write when it ends (None: nothing)
        self._dropped = 0  # open elements inside a dropped subtree (its root included)
        self._heading: list | None = None  # [level, depth at start, texts] while inside a heading
        self._pre = self._preserve = self._hidden = 0
        self._title: list[str] | None = None  # the first <title>'s texts, collected wherever it is
        self._in_title = False
        self._fence_at = 0  # out[] index of the open <pre>'s fence
        self._body: list[int | None] = [None, None]  # out[] range of the first <body>

    # -- lxml's target interface ------------------------------------------------------------------
    def start(self, tag, attrib, nsmap=None) -> None:
        self._flush()
        name = tag if isinstance(tag, str) else str(tag)
        self._pre += name == "pre"
        self._preserve += name in _PRESERVE
        self._hidden += name in _HIDDEN_TEXT
        if name == "title" and self._title is None:
            self._title, self._in_title = [], True
        if self._dropped or self._drops(name, attrib):
            self._dropped += 1
            self._ends.append(None)
        elif self._heading is not None:
            self._ends.append(None)
        elif name in HEADINGS:
            self._heading = [HEADINGS[name], len(self._ends), []]
            self._ends.append(None)
        else:
            self._ends.append(self._open(name))

    def end(self, tag) -> None:
        self._flush()
        name = tag if isinstance(tag, str) else str(tag)
        self._pre -= name == "pre"
        self._preserve -= name in _PRESERVE
        self._hidden -= name in _HIDDEN_TEXT
        if name == "title":
            self._in_title = False
        if not self._ends:
            return
        suffix = self._ends.pop()
        if self._dropped:
            self._dropped -= 1
        elif self._heading is not None:
            if self._heading[1] == len(self._ends):
                self._close_heading()
        elif suffix is _FENCE_END:
            self._close_fence()
        elif suffix is not None:
            self.out.append(suffix)
            if name == "body" and self._body[1] is None:
                self._body[1] = len(self.out)

    def data(self, text: str) -> None:
        self._pending.append(text)

    def comment(self, text) -> None:  # comments, doctypes and processing instructions end a string
        self._flush()

    def pi(self, target, data=None) -> None:
        self._flush()

    def doctype(self, *args) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()

    # -- the rules ------------------------------------------------------------------------------------
    @staticmethod
    def _drops(name: str, attrib) -> bool:
        if name in DROP_TAGS:
            return True
        role = attrib.get("role")
        if role is not None and role.lower() in DROP_ROLES:
            return True
        classes = attrib.get("class")
        return bool(classes) and DROP_CLASSES.search(classes) is not None

    def _open(self, name: str) -> str:
        """Write what starts element ``name``; return what ends it."""
        if name == "body" and self._body[0] is None:
            self._body[0] = len(self.out)
            return ""
        if name == "li":
            self.out.append("\n- ")
            return "\n"
        if name in ("td", "th"):
            return " | "
        if name == "pre" and self._pre == 1:  # fenced, so a "# comment" line in it is code, not a heading
            self._fence_at = len(self.out)
            self.out.append(f"\n\n{FENCE}\n")
            return _FENCE_END
        if name in BLOCKS:
            self.out.append("\n\n" if name == "pre" else "\n")  # keep code lines as they are
            return "\n\n" if name in _PARAGRAPH_END else "\n"
        return ""

    def _close_fence(self) -> None:
        """End a <pre>'s fence: none for an empty one, longer than any run of backticks inside it."""
        code = "".join(self.out[self._fence_at + 1:])
        if not code.strip():
            self.out[self._fence_at] = "\n\n"
            self.out.append("\n\n")
            return
        fence = "`" * max(len(FENCE), 1 + max(map(len, _BACKTICKS.findall(code)), default=0))
        self.out[self._fence_at] = f"\n\n{fence}\n"
        self.out.append(f"\n{fence}\n\n")

    def _close_heading(self) -> None:
        level, _, texts = self._heading
        self._heading = None
        text = " ".join(" ".join(texts).split())
        if text:  # an empty heading goes
            self.first_heading = self.first_heading or text
            self.out.append(f"\n\n{'#' * level} {text}\n\n")

    def _flush(self) -> None:
        """One string of text: whitespace as BeautifulSoup and the old extractor treated it, then routed."""
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        if not self._preserve and not text.translate(_ASCII_SPACE):
            text = "\n" if "\n" in text else " "
        if "\n" in text and not self._pre:
            text = _SPACE.sub(" ", text)  # line breaks in the source mean nothing outside <pre>
        if self._hidden:
            return
        if self._in_title:
            self._title.append(text)
        if self._dropped:
            return
        if self._heading is not None:
            self._heading[2].append(text)
        else:
            self.out.append(text)

    # -- results --------------------------------------------------------------------------------------
    def body_text(self) -> str:
        start, end = self._body
        if start is None:
            return "".join(self.out)
        return "".join(self.out[start:end])

    def title_text(self) -> str:
        return " ".join(" ".join(self._title).split()) if self._title else ""
