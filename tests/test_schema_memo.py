"""The test session's memo of jsonschema's metaschema checks (tests/schema_memo.py, installed by conftest) changes
no outcome: bad schemas and bad values are refused every time, good ones pass."""

from __future__ import annotations

import jsonschema
import pytest
from airflow.sdk import Param
from airflow.sdk.exceptions import ParamValidationError


def test_a_bad_schema_is_refused_every_time():
    for _ in range(2):
        with pytest.raises(jsonschema.SchemaError):
            jsonschema.validate(1, {"type": "no-such-type"})


def test_values_are_still_checked_after_the_schema_was_remembered():
    schema = {"type": "integer", "minimum": 1}
    jsonschema.validate(3, schema)
    for bad in (0, "x"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    param = Param(5, type="integer", minimum=1)
    assert param.resolve() == 5 and param.resolve(7) == 7
    with pytest.raises(ParamValidationError):
        param.resolve(0)
