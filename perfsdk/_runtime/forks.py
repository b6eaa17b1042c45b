"""The fork-reset registry: every object with threads, locks or queues joins it.

After ``os.fork()`` the child has one thread; locks held by the parent's other
threads stay held forever, queued work belongs to the parent, and worker
threads are gone. Each stateful object registers a reset method here with
``at_fork(self._after_fork)``; the registry holds it weakly (a
``weakref.WeakMethod``, as OpenTelemetry's ``BatchProcessor`` does), so
joining never keeps an object alive, and calls every live one in the child.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Callable

from perfsdk._runtime.locks import owned_lock

__all__ = ["at_fork"]

log = logging.getLogger("perfsdk")

_resets: list[Callable[[], Any]] = []  # weak references (or plain functions)
_lock = owned_lock()  # taken by perfsdk's threads too (a new file's writer): see locks.py
_PRUNE_AT = 1024


def at_fork(reset: Callable[[], Any]) -> None:
    """Call ``reset()`` in a forked child (a bound method is held weakly)."""
    ref: Callable[[], Any]
    if hasattr(reset, "__self__"):
        ref = weakref.WeakMethod(reset)
    else:
        ref = lambda: reset  # noqa: E731 - a plain function: held strongly
    with _lock:
        _resets.append(ref)
        if len(_resets) >= _PRUNE_AT and len(_resets) & (len(_resets) - 1) == 0:
            _resets[:] = [r for r in _resets if r() is not None]  # at powers of two: amortised


def _in_child() -> None:
    global _lock
    _lock = owned_lock()
    live = [r for r in _resets if r() is not None]
    _resets[:] = live
    for ref in live:
        reset = ref()
        if reset is None:
            continue
        try:
            reset()
        except Exception:  # one broken reset must not stop the others (or the child)
            try:
                log.exception("perfsdk: resetting %r after fork failed", reset)
            except Exception:  # nor a log handler that raises (faults.log_quietly, which this module is below)
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_in_child)
