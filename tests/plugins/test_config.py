"""Tracking can be switched off by environment variable or by Airflow config."""

from __future__ import annotations

import pytest

from ragtrail_airflow.config import mlflow_ui_url, policy, run_url, tracking_enabled


@pytest.mark.parametrize("env,expected", [({}, True), ({"RAGTRAIL_TRACKING": "off"}, False),
                                          ({"RAGTRAIL_TRACKING": "0"}, False),
                                          ({"AIRFLOW__RAGTRAIL__TRACKING_ENABLED": "False"}, False),
                                          ({"AIRFLOW__RAGTRAIL__TRACKING_ENABLED": "False", "RAGTRAIL_TRACKING": "on"}, True)])
def test_tracking_switch(monkeypatch, env, expected):
    for key in ("RAGTRAIL_TRACKING", "AIRFLOW__RAGTRAIL__TRACKING_ENABLED"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert tracking_enabled() is expected


def test_link_base_url_is_configurable(monkeypatch):
    monkeypatch.setenv("RAGTRAIL_MLFLOW_UI_URL", "https://mlflow.example.org/")
    assert mlflow_ui_url() == "https://mlflow.example.org"
    assert run_url("3", "abc") == "https://mlflow.example.org/#/experiments/3/runs/abc?workflowType=machine_learning"


def test_the_ragtrail_section_reaches_the_guard_policy(monkeypatch):
    """[ragtrail] options set the trail's policy (handed over as plain values); the environment wins."""
    for key in ("RAGTRAIL_MLFLOW_BUDGET_S", "RAGTRAIL_TRACKING_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AIRFLOW__RAGTRAIL__MLFLOW_BUDGET_S", "7")
    monkeypatch.setenv("AIRFLOW__RAGTRAIL__TRACKING_MODE", "strict")
    assert policy().budget_s == 7 and policy().strict and policy(budget_s=3).budget_s == 3
    monkeypatch.setenv("RAGTRAIL_MLFLOW_BUDGET_S", "9")
    assert policy().budget_s == 9
