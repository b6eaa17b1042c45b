"""perfsdk's start-up kept from bringing on a full garbage collection the host would not have had.

CPython collects its oldest generation once the objects promoted into it since the
last full collection are a quarter of those it kept then. perfsdk's start-up objects
-- its modules, numpy's, pyarrow's: some 10,000 -- live as long as the process, and
promoted one young collection at a time they count toward that quarter: in a service
started as docs/instrumentation.md shows, they tipped it, and the host paid one full
collection of its whole heap (50-60 ms) while serving, where without perfsdk it had none
(docs/benchmarks.md, "A good guest").

So perfsdk's heavy start-up (its lazy imports, ``init``) runs with the collector paused,
and what it made then goes straight to the oldest generation without counting as newly
promoted (``gc.freeze()`` then ``gc.unfreeze()``): still scanned, and collected if it
ever becomes garbage, by the next full collection, but not the cause of one. Nothing is
done if the host disabled the collector, or froze objects itself (unfreezing would undo
that), or before the process's first full collection (``gc.freeze()`` restarts the
generations' counts, which would put that first collection off until the host serves);
the pause lasts as long as the start-up, bounded (no I/O waits inside it).
"""

from __future__ import annotations

import gc
import sys
from contextlib import contextmanager
from typing import Iterator

from perfsdk._runtime.forks import at_fork
from perfsdk._runtime.locks import owned_lock

__all__ = ["long_lived_startup"]

_lock = owned_lock()  # (a lazy import on one of perfsdk's threads takes it too: see locks.py)
_depth = 0  # nested start-ups (a lazy import inside init): only the outermost acts
_paused = False  # the outermost start-up running now disabled the collector
# CPython 3.12 itself keeps objects in the permanent generation from start-up (the static types' base and
# MRO tuples: 375 in a bare 3.12.1): only more than those is a host's own gc.freeze(). Taken as the
# interpreter's only where it plausibly is (3.12+, a few hundred): a host that froze its own before importing
# perfsdk must not have them unfrozen by the start-up's pause.
_INTERPRETER_FROZEN = gc.get_freeze_count() if sys.version_info >= (3, 12) and gc.get_freeze_count() <= 1000 else 0


@contextmanager
def long_lived_startup() -> Iterator[None]:
    """Run a block whose new objects live as long as the process (see the module docstring).

    >>> import gc
    >>> with long_lived_startup():
    ...     tables = [{"row": i} for i in range(1000)]
    >>> gc.isenabled()
    True
    """
    global _depth, _paused
    with _lock:
        paused = (_depth == 0 and gc.isenabled() and gc.get_freeze_count() <= _INTERPRETER_FROZEN
                  and gc.get_stats()[-1]["collections"] > 0)
        if paused:
            gc.disable()
            _paused = True
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth = max(0, _depth - 1)  # (a child forked inside this block started from 0)
            if paused:
                _paused = False
                gc.freeze()  # every tracked object to the permanent generation...
                gc.unfreeze()  # ...and back into the oldest, not counted as promoted
                gc.enable()


def _after_fork() -> None:
    """In a forked child, a start-up that another thread of the parent was running never ends (the
    thread is gone): its lock may be held, its depth would stop every later start-up from acting,
    and a collector it paused would stay off for good."""
    global _lock, _depth, _paused
    _lock = owned_lock()
    _depth = 0
    if _paused:
        _paused = False
        gc.enable()


at_fork(_after_fork)
