"""HOOKS: what the running ``perfsdk.init()`` offers the layers below it.

``instrument`` sets these while perfsdk runs and clears them at shutdown;
``adapt`` and the ``@monitor`` decorator read them. Keeping the registry
here, at the bottom, is what lets a cache send its decisions to the Arrow
export without importing the instrumentation (and OpenTelemetry's SDK).
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["HOOKS", "Hooks"]


class Hooks:
    """None while perfsdk is not initialised."""

    #: The tracer ``@monitor`` starts its spans with.
    tracer: Any = None
    #: Where adaptive controllers send every ``Decision`` (the Arrow export).
    decisions: Callable[[Any], None] | None = None

    def clear(self) -> None:
        self.tracer = None
        self.decisions = None


HOOKS = Hooks()
