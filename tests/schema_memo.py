"""Remember which JSON schemas passed jsonschema's metaschema check, for the in-process ``dag.test`` runs.

Airflow resolves every ``Param`` many times while it serializes and runs a DAG (``Param.__eq__`` and ``__repr__``
resolve too), and each resolve calls ``jsonschema.validate``, which checks the *schema* against the JSON-Schema
metaschema before it checks the value: ~40 % of the CPU of a small ``dag.test`` run of rag_ingest (profiled:
1,876 resolves, 3.8 s of 10 s). A schema that passed the check passes it again, so the test session remembers the
schemas that passed; values are still validated every time and a bad schema still raises. Test-only: the product does
not patch third-party libraries.
"""

from __future__ import annotations

import json


def install() -> None:
    from jsonschema import validators

    passed: set[tuple[type, str]] = set()
    for cls in {validators.validator_for({}), *validators._VALIDATORS.values()}:
        original = cls.check_schema.__func__

        def check_schema(klass, schema, *args, _original=original, **kwargs):
            if args or kwargs:
                return _original(klass, schema, *args, **kwargs)
            try:
                key = (klass, json.dumps(schema, sort_keys=True))
            except (TypeError, ValueError):
                return _original(klass, schema)
            if key not in passed:
                _original(klass, schema)  # raises SchemaError for a bad schema, which is never remembered
                passed.add(key)

        cls.check_schema = classmethod(check_schema)
