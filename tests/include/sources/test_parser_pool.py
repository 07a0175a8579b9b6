"""Several sandboxed parsers at once: outcomes in the files' order, a hostile file costs only itself, a child
that dies is replaced, and the ingest stage writes the same docs, manifest and quarantine with one child or
several."""

from __future__ import annotations

import os
import signal

import pathological
import pytest

from ragtrail.core.cpus import usable_cpus
from ragtrail.core.envvar import BadSetting
from ragtrail.sources.parsed import Parsed
from ragtrail.sources.parser_pool import ParserPool, default_workers
from ragtrail.sources.sandbox import ParseJob


def _notes(folder, n):
    jobs = []
    for i in range(n):
        (folder / f"note{i:02d}.md").write_text(f"note number {i}")
        jobs.append(ParseJob(f"note{i:02d}.md", folder / f"note{i:02d}.md"))
    return jobs


def _seen(stream):
    return [(job.name, [o.text if isinstance(o, Parsed) else o.reason for o in outcomes]) for job, outcomes in stream]


def test_outcomes_come_in_the_files_order_from_every_child(tmp_path):
    notes = _notes(tmp_path, 20)
    jobs = [*notes[:5], ParseJob("listed only", None), *notes[5:]]
    with ParserPool(workers=3) as pool:
        seen = _seen(pool.parse_stream(jobs, ahead=2))
        started = [p._generation for p in pool.parsers]
    assert seen[5] == ("listed only", [])
    assert [s for s in seen if s[0] != "listed only"] == [(f"note{i:02d}.md", [f"note number {i}"]) for i in range(20)]
    assert started == [1, 1, 1]  # each child started once and took its share


def test_a_file_over_its_budget_costs_only_itself_and_the_others_keep_their_order(tmp_path):
    """One child is killed at its timeout and replaced; the files queued in every child still come, in order."""
    hostile = pathological.html_wide(tmp_path / "wide.html")
    notes = _notes(tmp_path, 12)
    jobs = [*notes[:4], ParseJob("wide.html", hostile), *notes[4:]]
    with ParserPool(workers=2, timeout_s=1) as pool:
        seen = _seen(pool.parse_stream(jobs, ahead=3))
        generations = sorted(p._generation for p in pool.parsers)
    assert seen[4] == ("wide.html", ["parse_timeout"])
    assert [s for s in seen if s[0] != "wide.html"] == [(f"note{i:02d}.md", [f"note number {i}"]) for i in range(12)]
    assert generations == [1, 2]  # only the child that held the hostile file was replaced


def test_a_child_that_dies_is_replaced_and_its_queued_files_are_parsed_by_the_new_one(tmp_path):
    slow = pathological.html_wide(tmp_path / "wide.html")  # seconds of parsing: the child dies in the middle
    notes = _notes(tmp_path, 12)
    with ParserPool(workers=2) as pool:
        stream = pool.parse_stream([ParseJob("wide.html", slow), *notes], ahead=4)
        first, outcomes = next(stream)
        victim = pool.parsers[0]  # the first file goes to the first child
        os.kill(victim._proc.pid, signal.SIGKILL)
        head = [o.text if isinstance(o, Parsed) else o.reason for o in outcomes]
        rest = _seen(stream)
        generations = [p._generation for p in pool.parsers]
    assert first.name == "wide.html" and head == ["parse_crashed"]
    assert rest == [(f"note{i:02d}.md", [f"note number {i}"]) for i in range(12)]
    assert generations == [2, 1]


def test_the_number_of_children_comes_from_the_env_else_the_usable_cpus():
    assert default_workers({"RAGTRAIL_PARSE_WORKERS": "3"}) == 3
    assert default_workers({}) == usable_cpus()
    with pytest.raises(BadSetting):
        default_workers({"RAGTRAIL_PARSE_WORKERS": "0"})
