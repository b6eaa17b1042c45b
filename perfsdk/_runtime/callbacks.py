"""User callbacks run with OpenTelemetry's instrumentation suppressed.

An ``on_anomaly`` callback that posts to a webhook through an instrumented
HTTP client would otherwise make spans that feed the detectors that called
it. OpenTelemetry's instrumentations and SDK processors check the
suppress-instrumentation key in the context; perfsdk sets it around every
callback and around its own exports.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from perfsdk._runtime.faults import Faults

__all__ = ["call_guarded", "call_user", "suppressed"]

_KEYS = [otel_context._SUPPRESS_INSTRUMENTATION_KEY]
if hasattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
    _KEYS.append(otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY)


@contextmanager
def suppressed() -> Iterator[None]:
    """Nothing inside the block is traced by OpenTelemetry's instrumentations."""
    ctx = otel_context.get_current()
    for key in _KEYS:
        ctx = otel_context.set_value(key, True, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def call_user(callback: Callable[..., Any], *args: Any) -> Any:
    """``callback(*args)`` with instrumentation suppressed (exceptions propagate)."""
    with suppressed():
        return callback(*args)


def call_guarded(callback: Callable[[Any], Any], item: Any, faults: "Faults", where: str) -> None:
    """``call_user(callback, item)`` on a worker: an exception is counted in ``faults`` as ``where``."""
    with faults.guard(where):
        call_user(callback, item)
