"""Pre-flight (issue 25 item 3): a run that cannot work fails in its first task, at once and without retries,
with the cause on the task's MLflow run, in the parent run's reasons and in the `ragtrail ingest` summary;
the CLI refuses a missing folder before a run exists."""

from __future__ import annotations

import json

from conftest import child_runs_of, ingest, run_cli, write_corpus

NOT_RUN = "not run because of the failure above: split, ingest, plan, chunk, index, evaluate, approve"


def _preflight_runs(mlflow_client, summary: dict) -> list:
    return [r for r in child_runs_of(mlflow_client, summary) if r.data.tags["airflow.task_id"] == "preflight"]


def test_a_missing_source_fails_at_preflight_once_and_nothing_else_runs(tmp_path, mlflow_client, monkeypatch):
    """Before: ingest failed after reading nothing, was retried, and the cause sat under a traceback."""
    monkeypatch.setenv("RAGTRAIL_TASK_RETRIES", "2")  # the pipeline's tasks retry; pre-flight must not
    missing = tmp_path / "no-such-folder"
    summary = ingest({"source": str(missing), "product": "preflight-missing"})
    cause = f"source {missing} does not exist: give an existing folder, file or s3://bucket/prefix"
    assert summary["status"] == "FAILED" and summary["reasons"] == [f"preflight: failed ({cause})", NOT_RUN]
    assert summary["tasks"]["preflight"] == "FAILED" and summary["tasks"]["ingest"] == "UPSTREAM_FAILED"
    runs = _preflight_runs(mlflow_client, summary)
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and runs[0].data.tags["ragtrail.error"] == cause
    assert cause in mlflow_client.get_run(summary["parent_run_id"]).data.tags["ragtrail.reasons"]


def test_an_unknown_connection_and_a_missing_bucket_are_named(s3_server, mlflow_client):
    unknown = ingest({"source": "s3://docs/handbook", "product": "preflight-s3", "aws_conn_id": "no_such_conn"})
    assert unknown["reasons"][0].startswith("preflight: failed (Airflow connection no_such_conn is not defined: "
                                            "add it (Admin → Connections, or AIRFLOW_CONN_NO_SUCH_CONN)"), unknown
    missing = ingest({"source": "s3://no-such-bucket/docs", "product": "preflight-s3"})
    assert missing["reasons"][0] == ("preflight: failed (source s3://no-such-bucket/docs: bucket no-such-bucket does "
                                     "not exist (through connection aws_default))"), missing["reasons"]
    assert s3_server.secret not in json.dumps([unknown, missing])


def test_the_cli_refuses_a_missing_folder_before_a_run_starts(tmp_path):
    proc = run_cli("ingest", "--source", str(tmp_path / "nothing-here"), "--product", "preflight-cli")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"ragtrail ingest: source {tmp_path / 'nothing-here'} does not exist: give an existing "
                           "folder, file or s3://bucket/prefix (no run started)\n")


def test_a_store_that_does_not_answer_is_the_cause_in_the_cli_summary(tmp_path, mlflow_client):
    corpus = write_corpus(tmp_path / "c", {"a.md": "Qdrant aliases switch collections atomically."})
    proc = run_cli("ingest", "--source", str(corpus), "--product", "preflight-store", "--json",
                   env={"RAGTRAIL_QDRANT_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["reasons"][0].startswith("preflight: failed (the Qdrant store at http://127.0.0.1:9 does not "
                                            "answer: "), summary["reasons"]
    assert "ragtrail ingest: pipeline FAILED: preflight: failed (the Qdrant store at http://127.0.0.1:9" in proc.stderr
    assert len(_preflight_runs(mlflow_client, summary)) == 1
