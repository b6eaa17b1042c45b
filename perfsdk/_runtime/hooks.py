"""HOOKS: what the running ``perfsdk.init()`` offers the layers below it.

``instrument`` sets these while perfsdk runs and clears them at shutdown;
``adapt`` and the ``@monitor`` decorator read them. Keeping the registry
here, at the bottom, is what lets a cache send its decisions to the Arrow
export without importing the instrumentation (and OpenTelemetry's SDK).
"""

from __future__ import annotations

from typing import Any, Callable

from perfsdk._runtime.worker import Worker

__all__ = ["DECISION_DELIVERY", "HOOKS", "Hooks", "USER_CALLBACKS"]


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

#: Decisions are delivered here, off the application's path (1,024 may wait; more are dropped,
#: counted): by the controllers in ``adapt``, flushed by the export in ``instrument``, which so
#: need not import each other.
DECISION_DELIVERY: Worker[Callable[[], Any]] = Worker("perfsdk-decisions", max_queue=1024, shared=True)

#: The user's ``on_decision`` callbacks run here, apart from perfsdk's own work above: one that
#: blocks holds up only the callbacks behind it (1,024 may wait; more are dropped, counted), never
#: the export or the fleet, and shutdown waits one second for it at most (then leaves it running
#: on the daemon thread, counted).
USER_CALLBACKS: Worker[Callable[[], Any]] = Worker("perfsdk-callbacks", max_queue=1024, shared=True,
                                                   park_timeout_s=1.0)
