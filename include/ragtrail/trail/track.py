"""``@track(feature, operation)``: one MLflow run per call of any function, the way the pipeline tracks tasks.

Each call is logged after it returns (so tracking never delays the work itself) as a run named
``<feature>.<operation>`` with:

- ``latency_s`` and ``success`` (1 or 0) metrics;
- on failure, status FAILED and the tags ``ragtrail.error_class`` and ``ragtrail.error``
  (``"Class: message"``); the exception propagates unchanged;
- whatever the function *returns* by this convention: a dict may carry ``"metrics"`` (name → number,
  logged as is), ``"tokens"`` (a number, or a dict with ``input``/``output``/``total`` — also
  ``prompt``/``completion`` — logged as ``tokens_input``, ``tokens_output``, ``tokens_total``) and
  ``"cost"`` (a number, logged as ``cost``). Any other return value is passed through untouched.

Called inside a tracked task (``@task.tracked``), the run is nested under that task's run, in the
product's experiment, and shares the task's MLflow time budget. Anywhere else it is a top-level run in
the feature's own experiment (named like a product's: ``ragtrail - <feature> (<id>)``). With tracking
off (``RAGTRAIL_TRACKING=off``, or ``tracking_enabled = False`` in the ``[ragtrail]`` values a tracked
task hands in) the decorator only calls the function. When MLflow is unavailable,
lenient mode logs a warning and returns the result; strict mode raises ``TrackingError``.

Example::

    from ragtrail.trail import track

    @track("answers", "generate")
    def answer(question: str) -> dict:
        reply = llm(question)
        return {"text": reply.text, "tokens": {"input": reply.prompt_tokens, "output": reply.completion_tokens},
                "cost": reply.cost_usd, "metrics": {"passages": 5}}
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ragtrail.trail.settings import tracking_enabled

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_TOKEN_KEYS = {"input": "tokens_input", "prompt": "tokens_input", "input_tokens": "tokens_input",
               "prompt_tokens": "tokens_input", "output": "tokens_output", "completion": "tokens_output",
               "output_tokens": "tokens_output", "completion_tokens": "tokens_output",
               "total": "tokens_total", "total_tokens": "tokens_total"}


def returned_metrics(result: Any) -> dict[str, float]:
    """Metrics a return value carries by the convention above (``{}`` for anything else)."""
    if not isinstance(result, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, value in (result.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    tokens = result.get("tokens")
    if isinstance(tokens, (int, float)) and not isinstance(tokens, bool):
        out["tokens_total"] = float(tokens)
    elif isinstance(tokens, Mapping):
        for key, value in tokens.items():
            if key in _TOKEN_KEYS and isinstance(value, (int, float)):
                out[_TOKEN_KEYS[key]] = float(value)
        if "tokens_total" not in out and ("tokens_input" in out or "tokens_output" in out):
            out["tokens_total"] = out.get("tokens_input", 0.0) + out.get("tokens_output", 0.0)
    cost = result.get("cost")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        out["cost"] = float(cost)
    return out


def track(feature: str, operation: str | None = None) -> Callable[[F], F]:
    """Decorate a function (sync or async) so that every call is logged as an MLflow run.

    Args:
        feature: what the function belongs to; names the experiment of top-level calls.
        operation: what it does; defaults to the function's name.
    """

    def decorate(fn: F) -> F:
        op = operation or fn.__name__

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not tracking_enabled():
                    return await fn(*args, **kwargs)
                started, t0 = time.time(), time.perf_counter()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    _log_call(feature, op, started, time.perf_counter() - t0, error=exc)
                    raise
                _log_call(feature, op, started, time.perf_counter() - t0, result=result)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not tracking_enabled():
                return fn(*args, **kwargs)
            started, t0 = time.time(), time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                _log_call(feature, op, started, time.perf_counter() - t0, error=exc)
                raise
            _log_call(feature, op, started, time.perf_counter() - t0, result=result)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _log_call(feature: str, operation: str, started: float, latency: float, *, result: Any = None,
              error: Exception | None = None) -> None:
    """Write one call's run; tracking failures never mask the function's own error."""
    from ragtrail.trail.guard import Policy, tracking_failed
    from ragtrail.trail.task_run import CURRENT_TASK_RUN

    task_run = CURRENT_TASK_RUN.get()
    if task_run is not None and not task_run.mlflow_run_id:
        return  # the task itself runs untracked (MLflow unavailable, lenient): so do its calls
    policy = task_run.policy if task_run is not None else Policy.from_env()
    client = task_run.client if task_run is not None else None
    try:
        if client is None:
            from ragtrail.trail.client import guarded_client

            client = guarded_client(policy)
        _write_run(client, feature, operation, started, latency, result, error, task_run)
    except Exception as err:
        if error is not None:  # the function failed: its own error goes up, not the trail's
            policy = policy.replace(mode="lenient")
        uri = client.guard.uri if client is not None else "(no client)"
        tracking_failed(policy, uri, f"logging the call {feature}.{operation}", err, "the call's result stands")


def _write_run(client, feature, operation, started, latency, result, error, task_run) -> None:
    from mlflow.entities import Metric

    from ragtrail.trail.client import get_or_create_experiment
    from ragtrail.trail.names import (
        DAG_TAG,
        MAP_TAG,
        PARENT_TAG,
        PRODUCT_TAG,
        ROLE_TAG,
        RUN_TAG,
        TASK_TAG,
        TRY_TAG,
        VERSION_TAG,
        error_tags,
    )

    tags = {ROLE_TAG: "call", "ragtrail.feature": feature, "ragtrail.operation": operation}
    if task_run is not None:
        experiment_id = task_run.experiment_id
        tags.update({PARENT_TAG: task_run.mlflow_run_id, DAG_TAG: task_run.dag_id, RUN_TAG: task_run.run_id,
                     TASK_TAG: task_run.task_id, TRY_TAG: str(task_run.try_number),
                     MAP_TAG: str(task_run.map_index), PRODUCT_TAG: task_run.product,
                     VERSION_TAG: task_run.version})
    else:
        experiment_id = get_or_create_experiment(client, feature, kind="feature")
    start_ms = int(started * 1000)
    end_ms = start_ms + int(latency * 1000)
    metrics = {"latency_s": latency, "success": 0.0 if error else 1.0}
    if error is None:
        metrics.update(returned_metrics(result))
    else:
        tags.update(error_tags(error))
    run = client.create_run(experiment_id, start_time=start_ms, run_name=f"{feature}.{operation}", tags=tags)
    client.log_batch(run.info.run_id, metrics=[Metric(k[:250], v, end_ms, 0) for k, v in metrics.items()])
    client.set_terminated(run.info.run_id, "FAILED" if error else "FINISHED", end_time=end_ms)
