"""What every handler shares: Powertools logging/tracing/metrics around a plain step function.

A handler module is `handler = step_handler("<step>", run)` where `run(event)` parses the event, makes its
clients, calls the domain and returns a JSON-ready dict of non-secret data. The handler takes the context
Lambda passes (Powertools reads its attributes); code that calls a handler outside Lambda passes one too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from rotation.errors import RotationError

from handlers import EXPECTED_ERROR_METRIC, METRICS_NAMESPACE

Step = Callable[[Any], dict[str, Any]]
Handler = Callable[[Any, LambdaContext], dict[str, Any]]

# Powertools objects are stateless between invocations apart from buffers they flush per invocation.
logger = Logger()  # service name: POWERTOOLS_SERVICE_NAME
tracer = Tracer()
metrics = Metrics(namespace=METRICS_NAMESPACE)

# Fields of the rotation object worth a log line (all non-secret).
SUMMARY_FIELDS = ("user", "mode", "classification", "resume_from", "old_key_id", "new_key_id", "action",
                  "polls", "outcome")


def summarize(result: Mapping[str, Any]) -> dict[str, Any]:
    summary = {name: result[name] for name in SUMMARY_FIELDS if result.get(name) is not None}
    distribution = result.get("distribution")
    if isinstance(distribution, Mapping):
        summary["distribution"] = {k: distribution.get(k) for k in ("confirmed", "total", "pending", "done")}
    return summary


def step_handler(step: str, run: Step) -> Handler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def decorated(event: Any, context: LambdaContext) -> dict[str, Any]:
        logger.append_keys(step=step)
        metrics.add_dimension(name="step", value=step)
        try:
            result = run(event)
        except RotationError as exc:
            metrics.add_metric(name="StepFailed", unit=MetricUnit.Count, value=1)
            # A typed domain error is how a step tells the state machine what happened (it catches it by
            # name and alerts through the failed execution); the step's error alarm subtracts these.
            metrics.add_metric(name=EXPECTED_ERROR_METRIC, unit=MetricUnit.Count, value=1)
            logger.warning("step failed", extra={"error": exc.name, "reason": str(exc)})
            raise
        except Exception:
            metrics.add_metric(name="StepFailed", unit=MetricUnit.Count, value=1)
            logger.exception("step failed unexpectedly")
            raise
        metrics.add_metric(name="StepSucceeded", unit=MetricUnit.Count, value=1)
        logger.info("step done", extra={"rotation": summarize(result)})
        return result

    decorated.__name__ = f"{step}_handler"
    handler: Handler = decorated  # (Powertools' decorators return untyped functions)
    return handler
