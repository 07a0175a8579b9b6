"""``@track(feature, operation)``: every call of any function as an MLflow trace span, the way tasks are tracked.

Each call is recorded as a span named ``<feature>.<operation>`` (``span_type`` CHAIN by default) with:

- its latency (the span's own timing), its inputs and its output, summarised (a few hundred
  characters at most: see :func:`ragtrail.trail.traces.summarise`);
- on failure, status ERROR with the exception (class, message, stack) as MLflow records it; the
  exception propagates unchanged;
- whatever the function *returns* by this convention: a dict may carry ``"metrics"`` (name → number),
  ``"tokens"`` (a number, or a dict with ``input``/``output``/``total`` — also ``prompt``/``completion``)
  and ``"cost"`` (a number): tokens become the span's token usage (``mlflow.chat.tokenUsage``), cost
  its ``mlflow.llm.cost``, everything as ``ragtrail.*`` attributes too. Any other return value is
  passed through untouched.

Called inside a tracked task (``@task.tracked``, or any task of a DAG the listener tracks), the trace
is linked to that task's run, in its experiment; a call inside another tracked call nests under it.
Anywhere else the trace goes to the feature's own experiment (named like a product's:
``ragtrail - <feature> (<id>)``). Calls are sampled (``RAGTRAIL_TRACE_SAMPLE_RATE`` /
``[ragtrail] trace_sample_rate``). With tracking off (``RAGTRAIL_TRACKING=off``, or
``tracking_enabled = False`` in the ``[ragtrail]`` values a tracked task hands in) the decorator only
calls the function. When MLflow is unavailable, lenient mode logs a warning and runs the call
untraced; strict mode raises ``TrackingError`` before the call.

Traces replace the earlier run per call, which flooded experiments with one run per question.

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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ragtrail.trail.names import ATTRIBUTE_PREFIX
from ragtrail.trail.switches import tracking_enabled
from ragtrail.trail.traces import span, summarise

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


def track(feature: str, operation: str | None = None, span_type: str = "CHAIN") -> Callable[[F], F]:
    """Decorate a function (sync or async) so that every call is recorded as an MLflow trace span.

    Args:
        feature: what the function belongs to; names the experiment of calls outside a task.
        operation: what it does; defaults to the function's name.
        span_type: MLflow's span type (``CHAIN``, ``LLM``, ``RETRIEVER``, ``TOOL``…).
    """

    def decorate(fn: F) -> F:
        name = f"{feature}.{operation or fn.__name__}"
        signature = inspect.signature(fn)

        def inputs(args, kwargs) -> dict:
            try:
                return dict(signature.bind_partial(*args, **kwargs).arguments)
            except TypeError:
                return {"args": args, "kwargs": kwargs}

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if not tracking_enabled():
                    return await fn(*args, **kwargs)
                with span(name, span_type, feature=feature, inputs=inputs(args, kwargs)) as live:
                    result = await fn(*args, **kwargs)
                    _record(live, result)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not tracking_enabled():
                return fn(*args, **kwargs)
            with span(name, span_type, feature=feature, inputs=inputs(args, kwargs)) as live:
                result = fn(*args, **kwargs)
                _record(live, result)
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def _record(live, result: Any) -> None:
    """Put the call's output and what it returned by the convention on its span."""
    if live is None:
        return
    live.set_outputs(summarise(result))
    metrics = returned_metrics(result)
    if not metrics:
        return
    live.set_attributes({ATTRIBUTE_PREFIX + k: v for k, v in metrics.items()})
    usage = {k: int(metrics[m]) for k, m in (("input_tokens", "tokens_input"), ("output_tokens", "tokens_output"),
                                             ("total_tokens", "tokens_total")) if m in metrics}
    if usage:
        live.set_attribute("mlflow.chat.tokenUsage", usage)
    if "cost" in metrics:
        live.set_attribute("mlflow.llm.cost", {"total_cost": metrics["cost"]})
