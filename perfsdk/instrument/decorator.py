"""``@perfsdk.monitor``: trace a function as an OpenTelemetry span.

Works on functions, ``async`` functions, generators and async generators;
keeps the signature and docstring; records an exception on the span with
error status and re-raises it unchanged. Before ``perfsdk.init()`` (or after
``shutdown()``) the wrapper calls straight through: one global read over a
bare call.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from perfsdk._runtime import HOOKS, TRACED_FUNCTIONS

F = TypeVar("F", bound=Callable[..., Any])


__all__ = ["monitor"]


@overload
def monitor(fn: F, /) -> F: ...
@overload
def monitor(name: str | None = None, /, *, attributes: Mapping[str, Any] | None = None) -> Callable[[F], F]: ...


def monitor(fn_or_name: Any = None, /, *, attributes: Mapping[str, Any] | None = None) -> Any:
    """Trace every call of the decorated function as a span.

    ``@monitor`` names the span after the function's qualified name;
    ``@monitor("checkout", attributes={"tier": "gold"})`` sets both.

    >>> import perfsdk
    >>> @perfsdk.monitor
    ... def add(a, b):
    ...     "Add two numbers."
    ...     return a + b
    >>> add(2, 3), add.__doc__, add.__name__
    (5, 'Add two numbers.', 'add')
    """
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping, got {attributes!r}")
    attrs = dict(attributes) if attributes else None
    if callable(fn_or_name):
        return _wrap(fn_or_name, _default_name(fn_or_name), attrs)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        raise TypeError(f"monitor takes a function or a span name, got {fn_or_name!r}")
    name = fn_or_name

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"monitor decorates a callable, got {fn!r}")
        return _wrap(fn, name or _default_name(fn), attrs)

    return decorate


def _default_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _wrap(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    if isinstance(fn, staticmethod):  # @monitor above @staticmethod: the function inside, kept static
        return staticmethod(_wrap(fn.__func__, name, attrs))
    TRACED_FUNCTIONS.record(fn, name)  # which function the span name stands for, in the span files
    # what a call runs: the function (inspect sees through partials), or a callable object's __call__
    call = None if inspect.isfunction(fn) or inspect.ismethod(fn) else getattr(type(fn), "__call__", None)

    def runs(kind: Callable[[Any], bool]) -> bool:
        return kind(fn) or (call is not None and kind(call))

    if runs(inspect.isasyncgenfunction):
        traced = _wrap_async_generator(fn, name, attrs)
    elif runs(inspect.iscoroutinefunction):
        traced = _wrap_coroutine(fn, name, attrs)
    elif runs(inspect.isgeneratorfunction):
        traced = _wrap_generator(fn, name, attrs)
    else:
        traced = _wrap_function(fn, name, attrs)
    traced.__perfsdk_span__ = name  # perfsdk's wrapper (``__wrapped__`` is the function): benchmarks step past it
    return traced


def _wrap_function(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            return fn(*args, **kwargs)
        with tracer.start_as_current_span(name, attributes=attrs):
            return fn(*args, **kwargs)

    return traced


def _wrap_coroutine(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            return await fn(*args, **kwargs)
        with tracer.start_as_current_span(name, attributes=attrs):
            return await fn(*args, **kwargs)

    return traced


def _fail(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _wrap_generator(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    # The span lasts from the first step to exhaustion, and is the current span
    # only while the generator's own code runs: between steps the caller's
    # context must not see it.
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            return (yield from fn(*args, **kwargs))
        span = tracer.start_span(name, attributes=attrs)
        gen = fn(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                item = gen.throw(thrown) if thrown is not None else gen.send(sent)
            except StopIteration as stop:
                span.end()
                return stop.value
            except BaseException as exc:
                _fail(span, exc)
                span.end()
                raise
            finally:
                otel_context.detach(token)
            try:
                sent, thrown = (yield item), None
            except GeneratorExit:
                gen.close()
                span.end()
                raise
            except BaseException as exc:  # thrown in by the caller: pass it on
                sent, thrown = None, exc

    return traced


def _wrap_async_generator(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            async for item in fn(*args, **kwargs):
                yield item
            return
        span = tracer.start_span(name, attributes=attrs)
        agen = fn(*args, **kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                if thrown is not None:
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(sent)
            except StopAsyncIteration:
                span.end()
                return
            except BaseException as exc:
                _fail(span, exc)
                span.end()
                raise
            finally:
                otel_context.detach(token)
            try:
                sent, thrown = (yield item), None
            except GeneratorExit:
                await agen.aclose()
                span.end()
                raise
            except BaseException as exc:
                sent, thrown = None, exc

    return traced
