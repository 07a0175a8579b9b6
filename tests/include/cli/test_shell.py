"""The CLI's tables (tabulate): numbers right-aligned and formatted, text left, gaps as '-'."""

from __future__ import annotations

from ragtrail.cli.shell import table


def test_table_aligns_numbers_right_and_text_left():
    out = table([["v1", 1200.0, 0.83456, None], ["v10-long", 7.0, None, "x"]],
                ["version", "points", "nDCG@10", "note"]).splitlines()
    assert out[0].split() == ["version", "points", "nDCG@10", "note"]
    assert set(out[1]) <= {"-", " "}
    assert out[2].split() == ["v1", "1200", "0.835", "-"] and out[3].split() == ["v10-long", "7", "-", "x"]
    assert out[2].index("1200") + 4 == out[3].index("7") + 1  # right-aligned numbers end together
    assert out[2].startswith("v1 ") and out[3].startswith("v10-long")


def test_an_empty_table_still_has_its_header():
    assert table([], ["a", "b"]).split() == ["a", "b", "---", "---"]
