"""The plan's changed-document list (a JsonArrayWriter file: the whole corpus on a first build) is read back
one element at a time, whatever the elements hold; any other JSON array still reads whole."""

from __future__ import annotations

import json

from ragtrail.sources.parsed import JsonArrayWriter, read_json_array


def test_json_array_file_reads_back_element_by_element(tmp_path):
    items = ["a.md", "b, c.md", "d].md", "e\nf.md", "é#1", {"key": "x", "reason": "[,]"}]
    with JsonArrayWriter(tmp_path / "a.json") as w:
        for x in items:
            w.append(x)
    assert json.loads((tmp_path / "a.json").read_text()) == items
    reader = read_json_array(tmp_path / "a.json")
    assert next(reader) == "a.md" and list(reader) == items[1:]  # a generator: nothing read ahead
    with JsonArrayWriter(tmp_path / "e.json"):
        pass
    assert list(read_json_array(tmp_path / "e.json")) == []
    (tmp_path / "o.json").write_text(json.dumps(["x", "y"], indent=None))
    assert list(read_json_array(tmp_path / "o.json")) == ["x", "y"]
