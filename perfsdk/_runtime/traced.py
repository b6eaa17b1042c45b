"""TRACED_FUNCTIONS: which function each ``@monitor`` span name stands for.

``@monitor`` records a function once, as it decorates it (nothing a call); the
span export writes the record into each span file's metadata, so that
``perfsdk testgen --bench-out`` can import and benchmark the hottest functions
it finds in the files. It lives here, at the bottom, because the decorator
(``instrument``) writes it and the span exporter (``export``) reads it.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TRACED_FUNCTIONS", "TracedFunctions"]


class TracedFunctions:
    """Span name -> the ``module:qualname`` of each function traced under it; bounded.

    >>> functions = TracedFunctions(max_names=1)
    >>> def add(a, b):
    ...     return a + b
    >>> functions.record(add, "add")
    >>> functions.record(len, "len")  # over the bound: traced, not named, counted
    >>> functions.snapshot(), functions.unnamed
    ({'add': ['perfsdk._runtime.traced:add']}, 1)
    """

    def __init__(self, max_names: int = 4096) -> None:
        self.max_names = max_names
        self.unnamed = 0  # functions decorated once the bound was reached
        self._targets: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def record(self, fn: Any, span_name: str) -> None:
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(qualname, str):
            return  # a callable object without a home (a partial, an instance): nothing to import
        with self._lock:
            if span_name in self._targets or len(self._targets) < self.max_names:
                self._targets.setdefault(span_name, set()).add(f"{module}:{qualname}")
            else:
                self.unnamed += 1

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {name: sorted(targets) for name, targets in self._targets.items()}


TRACED_FUNCTIONS = TracedFunctions()
