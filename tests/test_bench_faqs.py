"""bench/faqs.py's label rules on hand-written FAQ pages: what becomes a question, what its answer holds."""

from __future__ import annotations

import json
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import faqs  # noqa: E402

POD = """=head1 NAME

perlfaq4 - Data Manipulation

=head1 Data: Numbers

=head2 How do I round a C<< $x <= 1 >> number?

Use C<sprintf()>, see L<perlfunc/sprintf> and L<the docs|http://example.org/round>.

    printf("%.3f", 3.1415926535);

=over 4

=item *

floor E<gt> ceil

=back

=head2 Why?

Too short.

=cut
"""


def test_pod_answers_keep_code_and_lose_markup():
    md = faqs.pod_to_markdown(POD.split("number?\n", 1)[1].split("=head2", 1)[0])
    assert "Use `sprintf()`, see perlfunc sprintf and the docs." in md
    assert '```\nprintf("%.3f", 3.1415926535);\n```' in md
    assert "- floor > ceil" in md and "=over" not in md and "L<" not in md
    assert faqs.pod_inline("C<< $x <= 1 >>", markdown=False) == "$x <= 1"


def test_questions_are_headings_answers_are_files_named_by_position(tmp_path):
    pod_dir = tmp_path / "usr/share/perl/5.36.0/pod"
    pod_dir.mkdir(parents=True)
    for n in range(1, 10):
        (pod_dir / f"perlfaq{n}.pod").write_text(POD if n == 4 else "=head1 NAME\n\nempty\n")
    faq = tmp_path / "usr/share/doc/python3.11/html/faq"
    faq.mkdir(parents=True)
    page = ('<html><body><section id="a"><h1>General</h1><section id="b"><h2>What is Python?<a class="headerlink"'
            ' href="#b">¶</a></h2><p>Python is an interpreted, interactive, object-oriented programming language'
            ' that many people use.</p><section id="c"><h3>Is it free?</h3><p>Yes, it is free to use and to'
            ' distribute, even for commercial use.</p></section></section></section></body></html>')
    (faq / "general.html").write_text(page)
    (faq / "installed.html").write_text(page.replace("general", "installed"))
    root = tmp_path / "set"
    root.mkdir()
    (root / "deb").symlink_to(tmp_path)  # as if unpacked: no download
    corpus, questions, n = faqs.prepare(root)
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    # 'Why?' has a 2-word answer; 'What is Python?' and 'Is it free?' head two pages each: all left out
    assert [r["text"] for r in rows] == ["How do I round a $x <= 1 number?"] and n == 1
    assert rows[0]["relevant"] == ["perl/perlfaq4-001.md"]
    answer = (corpus / "perl/perlfaq4-001.md").read_text()
    assert "round" not in answer and "Use `sprintf()`" in answer
    python_answer = (corpus / "python/general-001.html").read_text()
    assert "What is Python" not in python_answer and "interpreted" in python_answer
    assert "free to use" not in python_answer and "¶" not in python_answer  # the nested question is its own file
    assert (root / "qrels/test.tsv").read_text() == "query-id\tcorpus-id\tscore\nfaq0000\tperl/perlfaq4-001.md\t1\n"
