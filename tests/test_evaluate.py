"""Retrieval quality on every build: the evaluate task's MLflow trail, the promotion gate, the registry
and the production pyfunc retriever, on the sample corpus and its bundled questions."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import child_runs_of, dump, ingest, run_cli

from ragtrail.core.settings import SAMPLE_CORPUS
from ragtrail.stages.evaluation import METRICS, SAMPLE_QUERIES, percentile

SUBSET = ("qdrant", "ragtrail")  # 8 documents: the gate's builds stay cheap
QUESTIONS = {"q1": "How do I rerun a task after it fails?", "q2": "What is a Qdrant alias for?",
             "q3": "How are chunks measured?"}


def evaluate_run(client, summary):
    (run,) = [c for c in child_runs_of(client, summary) if c.data.tags["ragtrail.stage"] == "evaluate"]
    return run


def registry_state(client, qdrant, product: str) -> dict:
    """Which collection each registry alias names, and where the Qdrant alias points."""
    state = {}
    for alias in ("candidate", "production"):
        mv = client.get_model_version_by_alias(f"ragtrail-{product}", alias)
        state[alias] = mv.tags["ragtrail.collection"]
    with qdrant() as store:
        state["qdrant"] = store.alias_target(product)
    return state


@pytest.fixture(scope="module")
def gate_conf(tmp_path_factory):
    """Product `gate`: two sample-corpus folders and the bundled questions about them."""
    root = tmp_path_factory.mktemp("gate")
    for part in SUBSET:
        shutil.copytree(SAMPLE_CORPUS / part, root / "corpus" / part)
    rows = [json.loads(line) for line in SAMPLE_QUERIES.read_text().splitlines()]
    kept = [r for r in rows if all(d.split("/")[0] in SUBSET for d in r["relevant"])]
    (root / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return {"source": str(root / "corpus"), "product": "gate", "eval_queries": str(root / "q.jsonl")}


@pytest.fixture(scope="module")
def half_source(tmp_path_factory) -> str:
    """The gate's corpus without its second folder: the questions about those documents lose their answers."""
    root = tmp_path_factory.mktemp("half")
    shutil.copytree(SAMPLE_CORPUS / SUBSET[0], root / SUBSET[0])
    return str(root)


def test_logged_metrics_equal_those_recomputed_from_the_per_query_table(handbook_run, mlflow_client, tmp_path):
    """The evaluate run's nDCG/recall/MRR/hit-rate are the means of its per-query table; latencies its percentiles."""
    run = evaluate_run(mlflow_client, handbook_run)
    table = json.loads(open(mlflow_client.download_artifacts(run.info.run_id, "eval/per_query.json", str(tmp_path))).read())
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert len(rows) == len(SAMPLE_QUERIES.read_text().splitlines()) == run.data.metrics["queries"] == 30
    for metric in METRICS:
        assert run.data.metrics[metric] == pytest.approx(sum(r[metric] for r in rows) / len(rows), abs=1e-9), metric
    latencies = [r["latency_ms"] for r in rows]
    assert run.data.metrics["latency_p95_ms"] == pytest.approx(percentile(latencies, 95))
    assert run.data.metrics["latency_p50_ms"] == pytest.approx(percentile(latencies, 50))
    assert all(len(json.loads(r["retrieved"])) == 10 for r in rows)  # chunk hits folded into 10 documents
    assert run.data.metrics["ndcg_at_10"] > 0.8  # the sample's questions were written for its documents
    assert run.data.params["collection"] == "handbook__v1"
    assert handbook_run["promoted"] is True and handbook_run["gate"] == "passed"
    assert handbook_run["eval"]["ndcg_at_10"] == run.data.metrics["ndcg_at_10"]
    # Production is this build or a later re-run of the same version (test order decides which).
    production = mlflow_client.get_model_version_by_alias("ragtrail-handbook", "production")
    registered = mlflow_client.get_run(production.run_id)
    assert production.tags["ragtrail.collection"] == "handbook__v1"
    assert registered.data.tags["ragtrail.stage"] == "evaluate" and registered.info.start_time >= run.info.start_time


def test_good_build_goes_live_a_bad_one_stays_dark(gate_conf, half_source, mlflow_client, qdrant):
    """A good build is promoted (production = Qdrant alias); a build that lost half its documents (with tiny
    chunks) falls behind it beyond the tolerance: built and registered as candidate, not live; `promote`
    refuses it unless --force, and after every step the registry's production alias and the Qdrant alias agree.

    (Tiny chunks alone are no reliable regression: int8 ONNX Runtime kernels differ by CPU — with AVX-512 VNNI
    the 16-token build of these 8 documents scored 0.947 against 0.929 for the default build.)"""
    good = ingest({**gate_conf, "version": "good"})
    assert good["status"] == "FINISHED" and good["promoted"] is True and good["gate"] == "passed", dump(good)
    assert registry_state(mlflow_client, qdrant, "gate") == dict.fromkeys(("candidate", "production", "qdrant"),
                                                                           "gate__good")
    bad = ingest({**gate_conf, "source": half_source, "version": "tiny", "chunk_size": 16, "chunk_overlap": 0})
    assert bad["status"] == "PARTIAL" and bad["promoted"] is False and bad["gate"] == "rejected", dump(bad)
    assert bad["eval"]["ndcg_at_10"] < good["eval"]["ndcg_at_10"] - 0.02
    assert "worse than gate__good's" in bad["gate_reason"]
    assert any(r.startswith("evaluate: not promoted (nDCG@10") for r in bad["reasons"]), bad["reasons"]
    assert bad["live_collection"] == "gate__good" and bad["vectors"] > good["vectors"]
    assert registry_state(mlflow_client, qdrant, "gate") == {"candidate": "gate__tiny", "production": "gate__good",
                                                             "qdrant": "gate__good"}
    mv = mlflow_client.get_model_version_by_alias("ragtrail-gate", "candidate")
    assert mv.tags["ragtrail.gate"] == "rejected" and mv.tags["ragtrail.chunk_size"] == "16"
    assert (mv.tags["ragtrail.retrieval_mode"], mv.tags["ragtrail.fusion"]) == ("hybrid", "dbsf")  # the defaults
    assert mv.tags["ragtrail.sparse_weight"] == "0.25"  # the default BM25 weight
    assert float(mv.tags["eval.ndcg_at_10"]) == pytest.approx(bad["eval"]["ndcg_at_10"], abs=1e-6)
    assert mv.tags["ragtrail.source_digest"] == good_digest(mlflow_client, bad) != good_digest(mlflow_client, good)

    refused = run_cli("promote", "--product", "gate", "--version", "tiny")
    assert refused.returncode == 1 and "held back by the evaluation gate" in refused.stderr
    assert run_cli("promote", "--product", "gate", "--version", "tiny", "--force").returncode == 0
    assert registry_state(mlflow_client, qdrant, "gate")["production"] == "gate__tiny"
    assert registry_state(mlflow_client, qdrant, "gate")["qdrant"] == "gate__tiny"
    assert run_cli("promote", "--product", "gate", "--version", "good").returncode == 0
    assert registry_state(mlflow_client, qdrant, "gate") == {"candidate": "gate__tiny", "production": "gate__good",
                                                             "qdrant": "gate__good"}


def good_digest(client, summary) -> str:
    """The source digest the ingest run logged as its dataset input."""
    (run,) = [c for c in child_runs_of(client, summary) if c.data.tags["ragtrail.stage"] == "ingest"]
    return run.inputs.dataset_inputs[0].dataset.digest


def test_production_pyfunc_returns_what_ragtrail_search_returns(handbook_run, settings, tmp_path, monkeypatch):
    """models:/ragtrail-handbook@production predicts the same hits as `ragtrail search` and `--from-registry`."""
    import mlflow
    import pandas as pd

    # Not mlflow.set_tracking_uri: it exports the URI to every later subprocess (the live Airflow's too).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model("models:/ragtrail-handbook@production")
    hits = model.predict(pd.DataFrame({"id": list(QUESTIONS), "text": list(QUESTIONS.values())}), params={"k": 5})
    from_model = {qid: [(h.doc_id, h.chunk_index, round(h.score, 5)) for h in hits[hits.query_id == qid].itertuples()]
                  for qid in QUESTIONS}
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in QUESTIONS.items()))
    for extra in ([], ["--from-registry"]):
        proc = run_cli("search", "--product", "handbook", "--json", "-k", "5", "--queries", str(queries), *extra)
        assert proc.returncode == 0, proc.stderr
        from_cli = {qid: [(h["doc_id"], h["chunk_index"], round(h["score"], 5)) for h in hits_]
                    for qid, hits_ in json.loads(proc.stdout).items()}
        assert from_cli == from_model and all(len(v) == 5 for v in from_cli.values())
    assert set(hits.version) == {"v1"}
    # Another retrieval mode on the same version: the model's `mode` param and the CLI's --mode agree too.
    dense = model.predict(pd.DataFrame({"id": list(QUESTIONS), "text": list(QUESTIONS.values())}),
                          params={"k": 5, "mode": "dense"})
    proc = run_cli("search", "--product", "handbook", "--json", "-k", "5", "--mode", "dense", "--queries", str(queries))
    assert proc.returncode == 0, proc.stderr
    assert {qid: [(h["doc_id"], round(h["score"], 5)) for h in hits_] for qid, hits_ in json.loads(proc.stdout).items()} \
        == {qid: [(h.doc_id, round(h.score, 5)) for h in dense[dense.query_id == qid].itertuples()] for qid in QUESTIONS}
    assert not dense.score.equals(hits.score)  # dense cosine scores, not the fused ones


def test_the_pyfunc_and_the_cli_rerank_alike_when_the_process_names_a_reranker(handbook_run, settings, tmp_path,
                                                                                monkeypatch):
    """With RAGTRAIL_RERANKER set (a tiny cross-encoder that prefers chunks dense in 'the'), the production
    pyfunc and `ragtrail search` give the same re-ordered hits, scored by that model, not the first stage."""
    import mlflow
    import pandas as pd
    from cross_encoders import tiny_fruit_ranker

    from ragtrail.stages.rerank import load_reranker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.delenv("RAGTRAIL_RERANKER", raising=False)
    model = mlflow.pyfunc.load_model("models:/ragtrail-handbook@production")
    frame = pd.DataFrame({"id": list(QUESTIONS), "text": list(QUESTIONS.values())})
    plain = model.predict(frame, params={"k": 5})
    folder = tiny_fruit_ranker(tmp_path / "the-ranker", marker="the")
    monkeypatch.setenv("RAGTRAIL_RERANKER", str(folder))
    hits = model.predict(frame, params={"k": 5})
    ce = load_reranker(folder)
    for qid, question in QUESTIONS.items():
        mine = hits[hits.query_id == qid]
        assert list(mine.score) == pytest.approx([float(s) for s in ce.predict([(question, t) for t in mine.text])])
        assert list(mine.score) == sorted(mine.score, reverse=True)
    key = ["query_id", "doc_id", "chunk_index"]
    assert hits[key].values.tolist() != plain[key].values.tolist()  # the model re-ordered something
    queries = tmp_path / "q.jsonl"
    queries.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in QUESTIONS.items()))
    proc = run_cli("search", "--product", "handbook", "--json", "-k", "5", "--queries", str(queries))
    assert proc.returncode == 0, proc.stderr
    from_cli = json.loads(proc.stdout)
    assert {qid: [(h["doc_id"], h["chunk_index"], round(h["score"], 5)) for h in v] for qid, v in from_cli.items()} == {
        qid: [(h.doc_id, h.chunk_index, round(h.score, 5)) for h in hits[hits.query_id == qid].itertuples()]
        for qid in QUESTIONS}
    assert all(h["first_stage_rank"] >= 1 for v in from_cli.values() for h in v)


def test_registered_model_ships_its_code_and_pinned_requirements(handbook_run, settings, tmp_path, monkeypatch):
    """The production retriever names only published packages, each pinned as in requirements.lock, and
    carries the ragtrail code itself: it loads and answers in an interpreter where no ragtrail is installed."""
    import subprocess
    import sys
    import sysconfig
    from importlib.metadata import version
    from pathlib import Path

    import mlflow
    import yaml

    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    model_dir = Path(mlflow.artifacts.download_artifacts("models:/ragtrail-handbook@production", dst_path=str(tmp_path)))
    reqs = [r for r in (model_dir / "requirements.txt").read_text().splitlines() if r.strip()]
    lock = dict(line.split("==", 1) for line in (Path(__file__).parents[1] / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    lock = {name.lower(): v.split()[0] for name, v in lock.items()}
    names = [r.split("==")[0] for r in reqs]
    assert "ragtrail" not in names and {"qdrant-client", "sentence-transformers", "mlflow"} <= set(names)
    for req in reqs:
        name, pinned = req.split("==")
        assert pinned == version(name).split("+")[0] == lock[name.lower()], req  # torch: 2.13.0, not +cpu
    assert (model_dir / "code" / "ragtrail" / "retriever.py").is_file()
    shipped = [p.relative_to(model_dir / "code").as_posix() for p in (model_dir / "code").rglob("*") if p.is_file()]
    assert shipped and all(p.endswith(".py") and "/." not in f"/{p}" for p in shipped), shipped  # no .ruff_cache
    assert yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]["code"] == "code"

    # -S: no site processing, so the editable install's finder of ragtrail is absent; only the model's code is.
    script = (f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
              "try:\n    import ragtrail\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('ragtrail installed')\n"
              "import mlflow.pyfunc, pandas as pd\n"
              f"m = mlflow.pyfunc.load_model({str(model_dir)!r})\n"
              "hits = m.predict(pd.DataFrame({'text': ['What is a Qdrant alias for?']}), params={'k': 3})\n"
              "print(len(hits), sys.modules['ragtrail'].__file__)\n")
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={**__import__("os").environ, "RAGTRAIL_HOME": str(settings.home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    count, origin = proc.stdout.split()[-2:]
    assert count == "3" and origin.startswith(str(tmp_path)), proc.stdout


def test_every_retrieval_mode_is_measured_on_the_evaluate_run_and_the_parent_run(handbook_run, mlflow_client, tmp_path):
    """The sample corpus's version (hybrid, DBSF by default) is also measured dense and sparse: per-mode metrics and
    ``eval/modes.json`` on the evaluate run, the per-mode metrics and the better-mode tag on the parent run."""
    from ragtrail.trail.names import BETTER_MODE_TAG, MODE_METRICS, mode_metric

    run = evaluate_run(mlflow_client, handbook_run)
    parent = mlflow_client.get_run(handbook_run["parent_run_id"])
    for mode in ("dense", "sparse", "hybrid"):
        for metric in MODE_METRICS:
            name = mode_metric(metric, mode)
            assert name in run.data.metrics, name
            if metric != "latency_p95_ms":
                assert 0.0 <= run.data.metrics[name] <= 1.0
            assert parent.data.metrics[name] == pytest.approx(run.data.metrics[name]), name
    # judged in its configured mode: the headline metrics are hybrid mode's
    assert run.data.metrics["ndcg_at_10"] == pytest.approx(run.data.metrics["ndcg_at_10.hybrid"])
    table = json.loads(open(mlflow_client.download_artifacts(run.info.run_id, "eval/modes.json", str(tmp_path))).read())
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert {r["mode"]: r["configured"] for r in rows} == {"dense": False, "sparse": False, "hybrid": True}
    better = run.data.tags[BETTER_MODE_TAG]
    assert parent.data.tags[BETTER_MODE_TAG] == better == (handbook_run["better_mode"] or "-")
    assert (better != "-") == ("beats the configured hybrid mode" in handbook_run["gate_reason"])
