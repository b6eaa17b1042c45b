"""TRACED_FUNCTIONS: which function each ``@monitor`` span name stands for.

``@monitor`` records a function once, as it decorates it (nothing a call); the
span export writes the record into each span file's metadata, so that
``perfsdk testgen --bench-out`` can import and benchmark the hottest functions
it finds in the files. It lives here, at the bottom, because the decorator
(``instrument``) writes it and the span exporter (``export``) reads it.
"""

from __future__ import annotations

from typing import Any

from perfsdk._runtime.forks import at_fork
from perfsdk._runtime.locks import owned_lock

__all__ = ["TRACED_FUNCTIONS", "TracedFunctions"]


class TracedFunctions:
    """Span name -> the ``module:qualname`` of each function traced under it; bounded.

    >>> functions = TracedFunctions(max_names=1)
    >>> def add(a, b):
    ...     return a + b
    >>> functions.record(add, "add")
    >>> functions.record(len, "len")  # over the bound: traced, not named, counted
    >>> functions.snapshot(), functions.unnamed, functions.version
    ({'add': ['perfsdk._runtime.traced:add']}, 1, 1)
    """

    MAX_PER_NAME = 16  # functions kept under one span name (more: the name is ambiguous anyway)

    def __init__(self, max_names: int = 4096) -> None:
        self.max_names = max_names
        self.unnamed = 0  # functions decorated once a bound was reached: traced, not named
        self.version = 0  # bumped by each function named: the span export then starts new files
        self._targets: dict[str, set[str]] = {}
        self._lock = owned_lock()  # the span writer reads it: see locks.py
        at_fork(self._after_fork)

    def record(self, fn: Any, span_name: str) -> None:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            return  # a callable object without a home (a partial, an instance): nothing to import
        target = f"{module}:{qualname}"
        with self._lock:
            targets = self._targets.get(span_name)
            if targets is None and len(self._targets) < self.max_names:
                targets = self._targets[span_name] = set()
            if targets is not None and target in targets:
                return  # the same function again (a closure made anew): nothing new
            if targets is None or len(targets) >= self.MAX_PER_NAME:
                self.unnamed += 1
                return
            targets.add(target)
            self.version += 1

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {name: sorted(targets) for name, targets in self._targets.items()}

    def _after_fork(self) -> None:
        self._lock = owned_lock()  # a parent thread may have held it; it does not exist here


TRACED_FUNCTIONS = TracedFunctions()
