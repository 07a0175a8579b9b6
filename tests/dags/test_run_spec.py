"""The run spec is the one place a run parameter is spelled: the trigger form, the ``ragtrail ingest``
flags, the products file, the version config and rag_tune's form all follow its rows, bounds included."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import REPO

from ragtrail.cli.flags import conf_from_args
from ragtrail.core import spec
from ragtrail.core.products import ProductsFileError, load_products


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def _over(row: spec.Field):
    """A value just outside the row's bounds (or None when it has none)."""
    if row.maximum is not None:
        return row.type(row.maximum + 1)
    if row.minimum is not None:
        return row.type(row.minimum - 1)
    if row.exclusive_minimum is not None:
        return row.type(row.exclusive_minimum)
    return None


@pytest.mark.parametrize("dag_id, rows", [("rag_ingest", spec.FIELDS), ("rag_tune", spec.TUNE_FIELDS)])
def test_every_row_is_a_form_param_with_its_bounds(bag, dag_id, rows):
    params = bag.get_dag(dag_id).params
    assert set(params.keys()) == {r.name for r in rows}
    for row in rows:
        param = params.get_param(row.name)
        assert param.value == row.default and param.description == row.form_description(), row.name
        assert row.description in param.description and row.bounds() in param.description, row.name
        assert param.schema.get("section") == row.section and param.schema["title"] == row.title, row.name
        for key, value in row.schema().items():
            assert param.schema[key] == value, (row.name, key)
        if row.optional:  # the form submits as it opens: an empty optional field is null
            param.resolve(None)
        if _over(row) is not None:
            with pytest.raises(Exception, match="valid|must be"):
                param.resolve(_over(row))


def test_a_products_dag_offers_only_its_product_and_its_configuration(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "products.yml"
    path.write_text("products:\n  - {name: alpha, source: /data, embedder: {name: m, backend: onnx-int8}}\n")
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    params = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest__alpha").params
    assert params.get_param("product").schema["enum"] == ["alpha"]
    assert (params["embedder"], params["embed_backend"]) == ("m", "onnx-int8")


def _ingest_parser():
    from ragtrail.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["ingest"]


def test_every_row_is_an_ingest_flag_with_its_bounds(capsys):
    parser = _ingest_parser()
    flags = {a.dest: a for a in parser._actions}
    base = ["--source", "x", "--product", "p"]
    for row in spec.FIELDS:
        assert row.name in flags, row.name
        action = flags[row.name]
        if row.enum:
            assert tuple(action.choices) == row.enum
        elif row.type is bool:
            assert vars(parser.parse_args([*base, row.flag]))[row.name] is (not row.default)
        if _over(row) is not None:
            with pytest.raises(SystemExit):
                parser.parse_args([*base, row.flag, str(_over(row))])
            assert f"{row.name} must be {row.bounds()}" in capsys.readouterr().err
            inside = row.maximum if row.maximum is not None else row.minimum
            if inside is not None:
                assert vars(parser.parse_args([*base, row.flag, str(row.type(inside))]))[row.name] == inside
    assert conf_from_args(parser.parse_args([*base, "--chunk-size", "100"])) == {
        "source": "x", "product": "p", "chunk_size": 100}


@pytest.mark.parametrize("row", [r for r in spec.FIELDS if r.products and _over(r) is not None],
                         ids=lambda r: r.name)
def test_every_products_row_is_validated_with_its_bounds_and_a_located_message(tmp_path, row):
    head, _, tail = row.products.partition(".")
    path = tmp_path / "products.yml"
    path.write_text(f"products:\n  - {{name: ok, source: x}}\n  - {{name: bad, source: x, {head}: {{{tail}: {_over(row)}}}}}\n")
    with pytest.raises(ProductsFileError) as err:
        load_products(path)
    assert str(err.value) == (f"{path.resolve()}: products[1] (bad): {row.products} must be {row.bounds()} "
                              f"(got {_over(row)!r})")


def test_a_bad_enum_in_the_products_file_names_the_choices(tmp_path):
    path = tmp_path / "products.yml"
    path.write_text("products:\n  - {name: docs, source: x, embedder: {backend: cuda}}\n")
    with pytest.raises(ProductsFileError, match=r"products\[0\] \(docs\): embedder.backend must be one of "
                                                r"torch, onnx-fp32, onnx-int8 \(got 'cuda'\)"):
        load_products(path)


def test_the_typed_config_has_one_field_per_row_and_a_version_config():
    assert [f.name for f in dataclasses.fields(spec.RunConfig)] == [r.name for r in spec.FIELDS]
    assert [f.name for f in dataclasses.fields(spec.TuneConfig)] == [r.name for r in spec.TUNE_FIELDS]
    cfg = spec.run_config({"product": "p", "chunk_size": 100, "max_file_mb": 2, "ignored": 1})
    assert cfg.chunk_size == 100 and cfg.max_file_mb == 2.0 and cfg.eval_queries is None
    assert cfg.version_config() == {"chunk_size": 100, "chunk_overlap": spec.BY_NAME["chunk_overlap"].default,
                                    "embedder": spec.BY_NAME["embedder"].default,
                                    "embed_backend": spec.BY_NAME["embed_backend"].default,
                                    "retrieval_mode": spec.BY_NAME["retrieval_mode"].default,
                                    "fusion": spec.BY_NAME["fusion"].default,
                                    "sparse_weight": spec.BY_NAME["sparse_weight"].default}
    with pytest.raises(ValueError, match="chunk_overlap must be a whole number from 0 to 256"):
        spec.run_config({"chunk_overlap": -1})


def test_ingest_in_process_refuses_to_wait_for_an_approval_nobody_can_give():
    """`ragtrail ingest --approval always` would park the run in dag.test for good: it says so instead."""
    from ragtrail.cli.main import run_ingest

    with pytest.raises(ValueError, match="approval needs a running Airflow"):
        run_ingest({"source": "x", "product": "p", "approval": "always"})
