"""HTML pages lose their navigation and keep their structure: headings, list items, sentences whole."""

from __future__ import annotations

from ragtrail.sources.html_extract import html_to_markdown
from ragtrail.sources.parsing import parse_bytes

DOCBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<html><head><title>27.2. Log-Shipping Standby Servers</title></head><body>
<div class="navheader"><table summary="Navigation header"><tr><th colspan="5">27.2. Log-Shipping</th></tr>
<tr><td><a accesskey="p" href="a.html">Prev</a></td><td><a href="up.html">Up</a></td>
<th>Chapter 27. High Availability</th><td><a href="index.html">Home</a></td></tr></table><hr /></div>
<div class="sect1"><h2 class="title">27.2. Log-Shipping Standby Servers</h2>
<p>Continuous archiving can be used to create a
   <em>high availability</em> cluster with the <code class="command">pg_basebackup</code> tool.</p>
<h3>27.2.1. Planning</h3><ul><li><p>Set up the primary.</p></li><li>Set up the standby.</li></ul>
<table><tr><td>wal_level</td><td>replica</td></tr></table></div>
<div class="navfooter"><hr /><table summary="Navigation footer"><tr><td>Prev</td><td>Next</td></tr></table></div>
<nav>Site map</nav><footer>Copyright</footer><div role="navigation">Skip to content</div>
</body></html>"""


def test_docbook_navigation_is_dropped_and_structure_kept():
    text = parse_bytes("standby.html", DOCBOOK.encode()).text
    assert "Prev" not in text and "Home" not in text and "Site map" not in text and "Copyright" not in text
    assert "Skip to content" not in text and "Chapter 27" not in text
    assert text.startswith("## 27.2. Log-Shipping Standby Servers")  # the page's heading, not the nav's
    # Inline markup stays inside its sentence; source line breaks inside a paragraph are gone.
    assert "used to create a high availability cluster with the pg_basebackup tool." in text
    assert "### 27.2.1. Planning" in text
    assert "- Set up the primary." in text and "- Set up the standby." in text
    assert "wal_level | replica" in text


def test_title_leads_when_no_heading_says_it():
    text = html_to_markdown("<html><head><title>Release notes</title></head><body><p>Fixed a bug.</p></body></html>")
    assert text.strip().startswith("# Release notes") and "Fixed a bug." in text


def test_pre_keeps_its_lines():
    text = html_to_markdown("<body><pre>SELECT 1;\nSELECT 2;</pre></body>")
    assert "SELECT 1;\nSELECT 2;" in text


def test_pre_is_fenced_so_its_comments_are_code():
    """A <pre> becomes a fenced block (longer than any backtick run inside it); an empty one gets no fence."""
    text = html_to_markdown("<body><h1>Install</h1><pre># create the venv\npython -m venv .venv</pre>"
                            "<pre>   </pre><pre>```\n# a fence in the example\n```</pre></body>")
    assert "```\n# create the venv\npython -m venv .venv\n```" in text
    assert "````\n```\n# a fence in the example\n```\n````" in text
    assert text.count("`") == 3 + 3 + 4 + 3 + 3 + 4  # the empty <pre> added none
