"""Params are checked before a run exists, with the run spec's rules, in plain words naming the field and the
accepted range; nothing is clamped (issue 25 item 2)."""

from __future__ import annotations

import pytest
from conftest import REPO, run_cli
from fastapi.testclient import TestClient

from ragtrail_airflow.api import create_app

CHUNK = "chunk_size must be a whole number from 16 to 510 (got -5)"
PRODUCT = ("product must be a name of 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit "
           "(got 'bad name!')")


@pytest.mark.parametrize("flags, message", [(["--chunk-size", "-5"], CHUNK),
                                            (["--chunk-size", "5"], CHUNK.replace("-5", "5")),
                                            (["--product", "bad name!"], PRODUCT),
                                            (["--max-file-mb", "-1"], "max_file_mb must be a number above 0 (got -1.0)")])
def test_ingest_refuses_a_bad_param_before_a_run_starts(tmp_path, flags, message):
    proc = run_cli("ingest", "--source", str(tmp_path), "--product", "p", *flags)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "log lines go to" not in proc.stderr  # no run was started


def test_the_rest_api_checks_a_conf_with_the_same_words():
    client = TestClient(create_app(lambda: None))
    bad = client.post("/api/params/check", json={"chunk_size": -5, "product": "bad name!", "max_file_mb": 2})
    assert bad.status_code == 400
    assert bad.json()["detail"]["errors"] == {"chunk_size": CHUNK, "product": PRODUCT}
    good = client.post("/api/params/check", json={"chunk_size": 128, "product": "handbook"})
    assert good.status_code == 200 and good.json()["ok"] is True


def test_the_trigger_form_names_the_range_and_airflow_refuses_instead_of_clamping():
    """Airflow's number field clamps a typed value into a top-level minimum/maximum when it loses focus (-5
    became 16 and the run started): the bounds sit where the field does not read them, and the API server's
    check still refuses the value, naming the bound; the description under the field names the range."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    param = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest").params.get_param("chunk_size")
    assert "minimum" not in param.schema and "maximum" not in param.schema
    assert param.description.endswith("Accepted: a whole number from 16 to 510.")
    with pytest.raises(ParamValidationError, match="-5 is less than the minimum of 16"):
        param.resolve(-5)
    assert param.resolve(16) == 16
