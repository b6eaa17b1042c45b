"""``@perfsdk.monitor``: trace a function as an OpenTelemetry span.

Works on functions, ``async`` functions, generators and async generators, and
on any other callable (a partial, a callable object, a builtin; above
``@staticmethod`` or ``@classmethod``); keeps the signature and docstring;
records an exception on the span with error status and re-raises it
unchanged. Before ``perfsdk.init()`` (or after ``shutdown()``) the wrapper
calls straight through: one global read over a bare call. OpenTelemetry's
span hooks (another span processor's ``on_start``/``on_end``) are not the
call's: a fault in them is counted (``stats()["faults"]``), and the call runs
and returns as it would undecorated.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any, Callable, Mapping, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from perfsdk._runtime import FAULTS, HOOKS, TRACED_FUNCTIONS

F = TypeVar("F", bound=Callable[..., Any])


__all__ = ["monitor"]


@overload
def monitor(fn: F, /) -> F: ...
@overload
def monitor(name: str | None = None, /, *, attributes: Mapping[str, Any] | None = None) -> Callable[[F], F]: ...


def monitor(fn_or_name: Any = None, /, *, attributes: Mapping[str, Any] | None = None) -> Any:
    """Trace every call of the decorated function as a span.

    ``@monitor`` names the span after the function's qualified name (a partial's
    function's, a callable object's class's); ``@monitor("checkout", attributes={"tier": "gold"})``
    sets both.

    >>> import perfsdk
    >>> @perfsdk.monitor
    ... def add(a, b):
    ...     "Add two numbers."
    ...     return a + b
    >>> add(2, 3), add.__doc__, add.__name__
    (5, 'Add two numbers.', 'add')
    """
    attrs = _attributes(attributes)
    if _decoratable(fn_or_name):
        return _wrap(fn_or_name, _default_name(fn_or_name), attrs)
    if fn_or_name is not None and not isinstance(fn_or_name, str):
        raise TypeError(f"monitor takes a function or a span name, got {fn_or_name!r}")
    name = fn_or_name

    def decorate(fn: F) -> F:
        if not _decoratable(fn):
            raise TypeError(f"monitor decorates a callable, got {fn!r}")
        return _wrap(fn, name or _default_name(fn), attrs)

    return decorate


def _decoratable(fn: Any) -> bool:
    return callable(fn) or isinstance(fn, (staticmethod, classmethod))


def _attributes(attributes: Any) -> dict[str, Any] | None:
    """The span attributes as a dict (None for none). A key that is not a str is refused now:
    OpenTelemetry would accept it with a warning on every call."""
    if attributes is None:
        return None
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping, got {attributes!r}")
    for key in attributes:
        if not isinstance(key, str):
            raise TypeError(f"attributes keys must be str (OpenTelemetry attribute names), got {key!r}")
    return dict(attributes) or None


def _default_name(fn: Any) -> str:
    """The qualified name of the function that runs: a partial's function's, a callable object's
    class's -- never a repr, whose address differs in every process (and fills the span-name cap)."""
    if isinstance(fn, (staticmethod, classmethod)):
        fn = fn.__func__
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__qualname__


def _wrap(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    if isinstance(fn, (staticmethod, classmethod)):  # @monitor above them: the function inside, kept so
        return type(fn)(_wrap(fn.__func__, name, attrs))
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
    if not inspect.isfunction(fn):  # a closure would bind as a method, and not pickle
        traced = (_BindingTraced if hasattr(type(fn), "__get__") else _Traced)(fn, attrs, traced)
    traced.__perfsdk_span__ = name  # perfsdk's wrapper (``__wrapped__`` is the function): benchmarks step past it
    return traced


class _Traced:
    """``@monitor`` around a callable that is not a function (a partial, a callable object, a
    builtin). An object, not a closure: a closure is a function, which binds as a class attribute
    where the callable did not, and cannot be pickled; this pickles as ``monitor`` of the callable."""

    # With __code__ and __name__, what makes an object "function-like" to inspect (as Cython's
    # functions and AsyncMock are): iscoroutinefunction and its kin see what kind of call it is.
    __defaults__ = __kwdefaults__ = None
    __wrapped__: Any  # set by update_wrapper
    __perfsdk_span__: str  # set by _wrap

    def __init__(self, fn: Any, attrs: dict[str, Any] | None, traced: Callable[..., Any]) -> None:
        functools.update_wrapper(self, fn)
        if not isinstance(getattr(self, "__qualname__", None), str):  # a partial, an object: after what it calls
            self.__qualname__ = _default_name(fn)
        if not isinstance(getattr(self, "__name__", None), str):
            self.__name__ = self.__qualname__.rpartition(".")[2]
        self._perfsdk_call = traced
        self._perfsdk_attributes = attrs

    @property
    def __code__(self) -> types.CodeType:
        return self._perfsdk_call.__code__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._perfsdk_call(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return _wrap, (self.__wrapped__, self.__perfsdk_span__, self._perfsdk_attributes)

    def __repr__(self) -> str:
        return f"<perfsdk.monitor of {self.__wrapped__!r}>"


class _BindingTraced(_Traced):
    """``_Traced`` around a callable whose type binds it (``__get__``: a method descriptor, a Cython
    function): bound to an instance where the callable binds itself, as a function would be."""

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        fn = self.__wrapped__
        if instance is None or fn.__get__(instance, owner) is fn:
            return self
        return types.MethodType(self, instance)


def _start(tracer: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    """The call's span, or None if OpenTelemetry's start hooks raised (counted): the call runs bare."""
    try:
        return tracer.start_span(name, attributes=attrs)
    except Exception as fault:
        FAULTS.record("@monitor span start", fault)
        return None


def _end(span: Any, exc: BaseException | None = None) -> None:
    """End ``span`` (if any), failed if the call raised ``exc`` -- an ``Exception``: a cancellation or
    ``GeneratorExit`` is not an error, as for OpenTelemetry's ``start_as_current_span``. A fault in
    OpenTelemetry's hooks (another processor's ``on_end``) is counted, never raised into the caller."""
    if span is None:
        return
    if isinstance(exc, Exception):
        try:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        except Exception as fault:
            FAULTS.record("@monitor span status", fault)
    try:
        span.end()
    except Exception as fault:
        FAULTS.record("@monitor span end", fault)


def _wrap_function(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            return fn(*args, **kwargs)
        span = _start(tracer, name, attrs)
        if span is None:
            return fn(*args, **kwargs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            otel_context.detach(token)
            _end(span, exc)
            raise
        otel_context.detach(token)
        _end(span)
        return result

    return traced


def _wrap_coroutine(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        tracer = HOOKS.tracer
        if tracer is None:
            return await fn(*args, **kwargs)
        span = _start(tracer, name, attrs)
        if span is None:
            return await fn(*args, **kwargs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            otel_context.detach(token)
            _end(span, exc)
            raise
        otel_context.detach(token)
        _end(span)
        return result

    return traced


def _wrap_generator(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    # The span lasts from the first step to exhaustion (or close), and is the current
    # span only while the generator's own code runs: between steps the caller's
    # context must not see it.
    @functools.wraps(fn)
    def traced(*args: Any, **kwargs: Any) -> Any:
        gen = fn(*args, **kwargs)
        tracer = HOOKS.tracer
        span = None if tracer is None else _start(tracer, name, attrs)
        if span is None:
            return (yield from gen)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = otel_context.attach(trace.set_span_in_context(span))
            try:
                item = gen.throw(thrown) if thrown is not None else gen.send(sent)
            except StopIteration as stop:
                _end(span)
                return stop.value
            except BaseException as exc:
                _end(span, exc)
                raise
            finally:
                otel_context.detach(token)
            try:
                sent, thrown = (yield item), None
            except GeneratorExit:  # closed: its clean-up (a finally:) is its own code, under its span
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    gen.close()
                except BaseException as exc:  # its clean-up failed: the span says so, and ends
                    _end(span, exc)
                    raise
                finally:
                    otel_context.detach(token)
                _end(span)
                raise
            except BaseException as exc:  # thrown in by the caller: pass it on
                sent, thrown = None, exc

    return traced


def _wrap_async_generator(fn: Any, name: str, attrs: dict[str, Any] | None) -> Any:
    # As a generator; without a span (before init(), or if starting it failed) the same loop
    # forwards asend/athrow/aclose: ``async for`` would drop them.
    @functools.wraps(fn)
    async def traced(*args: Any, **kwargs: Any) -> Any:
        agen = fn(*args, **kwargs)
        tracer = HOOKS.tracer
        span = None if tracer is None else _start(tracer, name, attrs)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            token = None if span is None else otel_context.attach(trace.set_span_in_context(span))
            try:
                if thrown is not None:
                    item = await agen.athrow(thrown)
                else:
                    item = await agen.asend(sent)
            except StopAsyncIteration:
                _end(span)
                return
            except BaseException as exc:
                _end(span, exc)
                raise
            finally:
                if token is not None:
                    otel_context.detach(token)
            try:
                sent, thrown = (yield item), None
            except GeneratorExit:
                token = None if span is None else otel_context.attach(trace.set_span_in_context(span))
                try:
                    await agen.aclose()
                except BaseException as exc:
                    _end(span, exc)
                    raise
                finally:
                    if token is not None:
                        otel_context.detach(token)
                _end(span)
                raise
            except BaseException as exc:
                sent, thrown = None, exc

    return traced
