"""The main content of an HTML page as Markdown-like text: boilerplate out, structure kept.

Navigation, page headers and footers are the same on every page of a site: embedded, they cost
tokens and make every page look a little alike. They are dropped by structure — ``<nav>``,
``<header>``, ``<footer>``, ``<aside>``, ARIA navigation / banner / contentinfo roles, and the classes
documentation generators give them (DocBook's ``navheader`` / ``navfooter``, Sphinx's ``related`` and
``sphinxsidebar``, breadcrumbs, skip links). What is left keeps its shape: headings become ``#`` lines
(so the chunker can carry the heading path into every chunk), list items ``- `` lines, table rows one
line each with ``|`` between cells, and inline markup (``<code>``, ``<a>``, ``<em>``) stays inside its
sentence instead of being broken onto lines of its own.

Example::

    html_to_markdown("<title>SET</title><div class='navheader'>Prev Next</div><h1>SET</h1><p>Use <code>SET</code>.</p>")
    # '# SET\\n\\nUse SET.'
"""

from __future__ import annotations

import re

DROP_TAGS = ("script", "style", "noscript", "template", "svg", "head", "nav", "header", "footer", "aside",
             "form", "button", "iframe")
DROP_ROLES = ("navigation", "banner", "contentinfo", "search")
# Class names (whole words) of navigation blocks in common documentation generators.
DROP_CLASSES = re.compile(r"\b(navheader|navfooter|breadcrumbs?|sphinxsidebar|related|skip-?link|"
                          r"site-(?:header|footer|nav)|headerlink|edit-?this-?page)\b", re.I)
BLOCKS = {"p", "div", "section", "article", "main", "pre", "blockquote", "table", "thead", "tbody", "tr",
          "ul", "ol", "dl", "dt", "dd", "figure", "figcaption", "hr", "br", "address", "details", "summary"}
HEADINGS = {f"h{i}": i for i in range(1, 7)}
_SPACE = re.compile(r"\s+")


def _text(node) -> str:
    return " ".join(node.get_text(" ").split())


def html_to_markdown(html: str) -> str:
    """Main-content text of ``html`` with ``#`` headings and ``- `` list items (see the module doc).

    The page ``<title>`` leads as a level-1 heading unless the page's first heading already says it.
    """
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():  # XHTML (DocBook's output) is HTML enough for lxml's HTML parser
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(html, "lxml")
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
    _drop_boilerplate(soup)
    _join_source_lines(soup)
    first_heading = _mark_headings(soup)
    _mark_blocks(soup)
    body = (soup.body or soup).get_text("")
    body = re.sub(r"[ \t]*\|[ \t]*\n", "\n", body)  # the last cell's separator
    body = re.sub(r"^- *\n\s*", "- ", body, flags=re.M)  # an item whose text sits in its own block
    if title and (first_heading is None or title.lower() not in first_heading.lower()):
        body = f"# {title}\n\n{body}"
    return body


def _drop_boilerplate(soup) -> None:
    """Remove navigation, headers, footers and the like: by tag, ARIA role and class."""
    for tag in soup(DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": True}):
        if not tag.decomposed and str(tag.get("role")).lower() in DROP_ROLES:
            tag.decompose()
    for tag in soup.find_all(class_=DROP_CLASSES):
        if not tag.decomposed:
            tag.decompose()


def _join_source_lines(soup) -> None:
    """Line breaks in the HTML source mean nothing outside ``<pre>``: a paragraph is one line."""
    from bs4 import NavigableString

    for node in soup.find_all(string=True):
        if type(node) is NavigableString and "\n" in node and node.find_parent("pre") is None:
            node.replace_with(NavigableString(_SPACE.sub(" ", str(node))))


def _mark_headings(soup) -> str | None:
    """Turn headings into ``#`` lines (empty ones go); returns the first heading's text."""
    from bs4 import NavigableString

    first_heading = None
    for tag in soup.find_all(list(HEADINGS)):
        text = _text(tag)
        if not text:
            tag.decompose()
            continue
        first_heading = first_heading or text
        tag.replace_with(NavigableString(f"\n\n{'#' * HEADINGS[tag.name]} {text}\n\n"))
    return first_heading


def _mark_blocks(soup) -> None:
    """List items become ``- `` lines, cells end in `` | ``, blocks start and end lines."""
    from bs4 import NavigableString

    for tag in soup.find_all("li"):
        tag.insert(0, NavigableString("\n- "))
        tag.append(NavigableString("\n"))
    for tag in soup.find_all(["td", "th"]):
        tag.append(NavigableString(" | "))
    for tag in soup.find_all(BLOCKS):
        tag.insert(0, NavigableString("\n\n" if tag.name == "pre" else "\n"))  # keep code lines as they are
        tag.append(NavigableString("\n\n" if tag.name in {"p", "pre", "table", "ul", "ol", "dl", "blockquote"} else "\n"))
