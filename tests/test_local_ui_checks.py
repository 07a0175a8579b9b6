"""A person at the trigger form (issue 25 items 2 and 3): a bad chunk size or product name is refused with the
param, the value and the bound, nothing is clamped and each field's description names what it accepts; a
source that does not exist fails at pre-flight, at once, with the cause in the task's log and the run's
reasons. Headless Chromium against `ragtrail ui start` (the fixtures of tests/test_local_ui.py)."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from playwright.sync_api import expect
from test_local_ui import _wait_run_done, browser, call, login, person, stack, wait_for

# tests/test_local_ui.py's fixtures, found by pytest by their names here: a `ragtrail ui start` stack of this
# module's own, a headless Chromium and a person signed in to Airflow.
FIXTURES = (browser, person, stack)


@pytest.fixture(scope="module")
def parsed(stack):
    """rag_ingest as the dag-processor parsed it (its page has no Trigger button before)."""
    token = login(stack)
    wait_for(lambda: call("GET", f"{stack.airflow}/api/v2/dags/rag_ingest", token=token)[0] == 200, 180,
             "the dag-processor to parse rag_ingest")
    return stack


def _trigger_form(page, airflow: str):
    page.goto(f"{airflow}/dags/rag_ingest")
    page.get_by_role("button", name="Trigger").first.click()
    return page.get_by_role("dialog")


def _field(form, name: str):
    """The input of a param (Airflow's form names it ``element_<name>``)."""
    return form.locator(f"input[name='element_{name}']:not([type=hidden])").first


def test_a_bad_chunk_size_is_refused_as_typed_with_its_range(parsed, stack, person, tmp_path):
    page = person.new_page()
    form = _trigger_form(page, stack.airflow)
    form.get_by_role("button", name="Chunking & embedding").click()
    expect(form.get_by_text("Accepted: a whole number from 16 to 510.")).to_be_visible()
    chunk = _field(form, "chunk_size")
    chunk.fill("-5")
    chunk.blur()
    expect(chunk).to_have_value("-5")  # not clamped to 16 when the field loses focus
    form.get_by_role("button", name="Trigger").click()
    expect(form.get_by_text(re.compile(r"Invalid input for param chunk_size: -5 is less than the minimum of 16"))
           ).to_be_visible()
    page.screenshot(path=tmp_path / "bad-chunk-size-refused.png", full_page=True)
    token = login(stack)
    runs = call("GET", f"{stack.airflow}/api/v2/dags/rag_ingest/dagRuns", token=token)[1]
    assert runs["total_entries"] == 0, "no run was started"
    page.close()


def test_a_bad_product_name_is_refused_and_the_rule_is_under_the_field(parsed, stack, person, tmp_path):
    page = person.new_page()
    form = _trigger_form(page, stack.airflow)
    expect(form.get_by_text("Index name: the Qdrant alias and the MLflow experiment. Accepted: a name of 1 to 63 "
                            "letters, digits, '_', '.' or '-', starting with a letter or digit.")).to_be_visible()
    _field(form, "product").fill("bad name!")
    form.get_by_role("button", name="Trigger").click()
    expect(form.get_by_text(re.compile(r"Invalid input for param product: 'bad name!' does not match"))).to_be_visible()
    page.screenshot(path=tmp_path / "bad-product-name-refused.png", full_page=True)
    page.close()


def test_a_missing_source_fails_at_preflight_with_the_cause_in_view(parsed, stack, person, tmp_path):
    missing = stack.corpus / "no-such-folder"
    page = person.new_page()
    form = _trigger_form(page, stack.airflow)
    _field(form, "source").fill(str(missing))
    form.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(r".*/dags/rag_ingest/runs/[^/]+$"))
    run_id = urllib.parse.unquote(page.url.rsplit("/runs/", 1)[1])
    assert _wait_run_done(stack, run_id) == "failed"
    cause = f"source {missing} does not exist: give an existing folder, file or s3://bucket/prefix"
    run = call("GET", f"{stack.airflow}/ragtrail/api/dag_runs/rag_ingest/{urllib.parse.quote(run_id, safe='')}",
               token=login(stack))[1]
    assert f"preflight: failed ({cause})" in run["reasons"], run
    page.goto(f"{stack.airflow}/dags/rag_ingest/runs/{urllib.parse.quote(run_id, safe='')}/tasks/preflight")
    expect(page.get_by_text(f"pre-flight failed: {cause}").first).to_be_visible()
    page.screenshot(path=tmp_path / "missing-source-preflight-log.png", full_page=True)
    page.close()
