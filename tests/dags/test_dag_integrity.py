"""DAG files parse cleanly, read like a table of contents, and import nothing heavy at parse time."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

HEAVY = ["torch", "sentence_transformers", "transformers", "mlflow", "qdrant_client", "pandas", "pypdfium2"]


def test_dagbag_has_no_import_errors():
    """Every file in dags/ imports without error and defines at least one DAG."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert {"rag_ingest", "rag_tune"} <= set(bag.dag_ids)


def test_rag_tune_shape_and_params():
    """rag_tune: tune → build_best → aggregate_status, bounded by trial and time params; build_best is a
    real TriggerDagRunOperator in the graph (not one executed inside a task) fed by tune's XCom."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_tune")
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream == {"tune": set(), "build_best": {"tune"}, "aggregate_status": {"build_best"}}
    build_best = dag.get_task("build_best")
    assert isinstance(build_best, TriggerDagRunOperator) and build_best.trigger_dag_id == "rag_ingest"
    assert build_best.retries == 0 and not build_best.wait_for_completion
    assert build_best.conf.operator.task_id == "tune" and build_best.conf.key == "build_conf"
    for name in ("source", "eval_queries", "embedders", "min_chunk_size", "max_chunk_size", "n_trials", "timeout_s",
                 "build_best"):
        assert dag.params.get_param(name).description, name


def test_dags_have_docs_tags_and_retries():
    """Each DAG documents itself, is tagged, sets retries in default_args, and never retries its roll-up."""
    from airflow.dag_processing.dagbag import DagBag

    for dag in DagBag(dag_folder=str(REPO / "dags")).dags.values():
        assert dag.doc_md and dag.tags, dag.dag_id
        assert dag.task_ids, f"{dag.dag_id} has no task"  # a builder that forgot to call its task
        assert "retries" in dag.default_args, dag.dag_id
        if "aggregate_status" in dag.task_ids:
            assert dag.get_task("aggregate_status").retries == 0


def test_rag_ingest_shape_and_params():
    """rag_ingest wires preflight → split → ingest[] → plan → chunk[] → dedupe → embed[] → write_groups → write[] → index → evaluate →
    approve → aggregate_status, with typed, described params for the trigger form; evaluate and approve emit index
    events through an alias; ingest is mapped over the split's shards, each map index named by its key range; the
    write groups are decided at run time (write_groups), throttled per DAG run (two at a time on the embedded store)
    and named by their chunk batches."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest")
    upstream = {t.task_id: t.upstream_task_ids for t in dag.tasks}
    assert upstream["split"] == {"preflight"} and dag.get_task("preflight").retries == 0  # fails at once
    assert upstream["ingest"] == {"split"} and dag.get_task("ingest").map_index_template == "{{ shard_label }}"
    assert upstream["plan"] == {"ingest"} and upstream["chunk"] == {"plan"} and upstream["dedupe"] == {"chunk"}
    assert upstream["embed"] == {"dedupe"} and upstream["write_groups"] == {"dedupe"}
    assert upstream["write"] == {"embed", "write_groups"} and upstream["index"] == {"write"}
    write = dag.get_task("write")
    assert write.map_index_template == "{{ write_label }}" and write.max_active_tis_per_dagrun == 2
    # the groups are the run's, decided by dedupe: write maps over the write_groups task's list
    assert write.op_kwargs_expand_input.value["group"].operator.task_id == "write_groups"
    assert write.trigger_rule == "all_done" and write.partial_kwargs["needs"] == ("dedupe",)
    assert upstream["evaluate"] == {"plan", "index"}  # the source digest (in the plan file), the built collection
    assert dag.get_task("plan").trigger_rule == "all_done_min_one_success"  # a failed shard: PARTIAL, not FAILED
    # index waits for every write group (all_done), evaluate for index, approve for evaluate
    assert upstream["approve"] == {"evaluate"} and upstream["aggregate_status"] == {"index", "evaluate", "approve"}
    assert [o.name for o in dag.get_task("evaluate").outlets] == ["ragtrail_index"] == \
        [o.name for o in dag.get_task("approve").outlets]
    assert dag.get_task("aggregate_status").trigger_rule == "all_done"
    assert dag.get_task("index").trigger_rule == "all_done"  # publishes good batches when some failed
    for name in ("source", "product", "version", "docs_per_shard", "chunk_size", "chunk_overlap", "embedder", "sync_mode", "aws_conn_id",
                 "max_file_mb", "id_column", "text_column", "metadata_columns", "eval_queries", "min_ndcg",
                 "eval_tolerance", "approval", "approval_timeout_h"):
        param = dag.params.get_param(name)
        assert param.description and (param.schema.get("type") or param.schema.get("enum")), name
    for task_id in ("preflight", "split", "ingest", "plan", "chunk", "dedupe", "embed", "write", "index", "evaluate"):
        assert "MLflow run" in [link.name for link in dag.get_task(task_id).operator_extra_links]


def test_parsing_imports_no_heavy_library():
    """Parsing dags/ in a fresh interpreter leaves torch, mlflow, qdrant_client… unimported."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _bag_with_products(tmp_path, monkeypatch, text: str):
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "products.yml"
    path.write_text(text)
    monkeypatch.setenv("RAGTRAIL_PRODUCTS_FILE", str(path))
    return DagBag(dag_folder=str(REPO / "dags"))


def test_one_scheduled_dag_per_product_with_the_same_pipeline(tmp_path, monkeypatch):
    """Each product becomes rag_ingest__<name>: its schedule, paused at creation, its config as the form's
    defaults, its name as the only allowed product, and exactly rag_ingest's task graph."""
    bag = _bag_with_products(tmp_path, monkeypatch, """
products:
  - {id: 11111111-aaaa-4bbb-8ccc-000000000001, name: alpha, source: /data/alpha, schedule: "@daily",
     version: v3, chunking: {chunk_size: 128, chunk_overlap: 8}}
  - {name: beta, source: s3://bucket/beta/, schedule: "0 */6 * * *", embedder: {batch_size: 16}}
""")
    assert not bag.import_errors, bag.import_errors
    base = bag.get_dag("rag_ingest")
    for dag_id, schedule in (("rag_ingest__alpha", "@daily"), ("rag_ingest__beta", "0 */6 * * *")):
        dag = bag.get_dag(dag_id)
        assert dag is not None and dag.schedule == schedule and dag.is_paused_upon_creation
        assert set(dag.task_ids) == set(base.task_ids)
        for task_id in base.task_ids:
            assert dag.get_task(task_id).upstream_task_ids == base.get_task(task_id).upstream_task_ids
    alpha = bag.get_dag("rag_ingest__alpha").params
    assert (alpha["source"], alpha["version"], alpha["chunk_size"], alpha["chunk_overlap"]) == ("/data/alpha", "v3", 128, 8)
    assert alpha.get_param("product").schema["enum"] == ["alpha"]
    assert bag.get_dag("rag_ingest__beta").params["batch_size"] == 16


def test_a_broken_products_file_is_an_import_error_naming_the_field(tmp_path, monkeypatch):
    bag = _bag_with_products(tmp_path, monkeypatch, "products:\n  - {name: gamma, source: x, chunking: {chunk_size: 5}}\n")
    errors = " ".join(str(e) for e in bag.import_errors.values())
    assert "rag_products.py" in " ".join(bag.import_errors) and "chunk_size must be a whole number" in errors
    assert "rag_ingest" in bag.dag_ids  # the generic DAG is unaffected


def test_store_tasks_pin_to_the_store_queue_only_without_a_qdrant_server(monkeypatch):
    """RAGTRAIL_STORE_QUEUE sends split, plan, write, index, evaluate and approve (the tasks that open a local-mode
    store; split reads the collection's stamp for the source state) to one queue; the ingest shards and chunk/embed
    keep the default queue (any worker); with a Qdrant server configured nothing is pinned, and the write groups
    run all at once (two at a time on the embedded store)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RAGTRAIL_STORE_QUEUE", "store-host")
    monkeypatch.delenv("RAGTRAIL_QDRANT_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_QDRANT_DEFAULT", raising=False)
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest")
    queues = {t.task_id: t.queue for t in dag.tasks}
    assert {t for t, q in queues.items() if q == "store-host"} == {"split", "plan", "write", "index", "evaluate",
                                                                      "approve"}, queues
    assert dag.get_task("write").max_active_tis_per_dagrun == 2  # writers of different parts side by side
    monkeypatch.setenv("RAGTRAIL_QDRANT_URL", "http://qdrant:6333")
    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("rag_ingest")
    assert "store-host" not in {t.queue for t in dag.tasks}
    assert dag.get_task("write").max_active_tis_per_dagrun == 4  # four writers at once (a server's default)
