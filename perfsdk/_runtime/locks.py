"""Locks that know the thread holding them: how perfsdk tells that a call came from inside itself.

Python runs a signal handler on the main thread between two of its bytecodes, wherever that
thread is -- maybe inside one of perfsdk's locks (a worker's queue, a table's buffer, the fault
counts) -- and a garbage collection runs finalizers on whatever thread allocated. A handler that
then flushes or shuts perfsdk down (a SIGTERM handler) waited for a lock its own thread held, or
for a perfsdk thread that waited for it: the process hung. So every lock that perfsdk's flush and
shutdown take, or the threads they wait for take, is made by ``owned_lock``, and
``inside_perfsdk()`` tells, exactly, whether the calling thread holds one: then nothing may wait
(``PerfSDK.force_flush`` and ``shutdown`` hand their work to a thread, which gets the locks as
soon as the interrupted code lets go of them).

They are ``threading.RLock``s, whose holder CPython keeps in C, set as it is acquired (its
``_is_owned``, which ``threading.Condition`` relies on): a handler landing right after the
acquisition sees it held. Being reentrant is not what they are for: an entry that a call from
inside could make and that must not nest (a file half written) checks ``held_here`` first.

The adaptive pool's ``DeferringLock`` (``perfsdk/_native/_pool.pyx``) knows its holder too, compiled
for the lending path (an acquire + release costs 400 ns there): it defers a give-back made on the
holding thread instead of handing a flush over, and never nests. A flush or shutdown does not
take it itself (work that does -- a sizing decision -- is waited for with a deadline), so
``inside_perfsdk`` does not look at it.

>>> lock = owned_lock()
>>> with lock:
...     held_here(lock), inside_perfsdk()
(True, True)
>>> held_here(lock), inside_perfsdk()
(False, False)
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["held_here", "inside_perfsdk", "owned_lock"]

_LOCKS: weakref.WeakSet[Any] = weakref.WeakSet()  # every owned lock alive


def owned_lock() -> Any:
    """A lock (an ``RLock``) that ``held_here`` and ``inside_perfsdk`` can see."""
    lock = threading.RLock()
    _LOCKS.add(lock)
    return lock


def held_here(lock: Any) -> bool:
    """Does the calling thread hold ``lock`` (an ``owned_lock``)?"""
    return bool(lock._is_owned())


def inside_perfsdk() -> bool:
    """Does the calling thread hold any of perfsdk's locks: was it interrupted inside perfsdk (a
    signal handler, a finalizer)? Waiting for perfsdk's work could then be waiting for itself."""
    while True:
        try:
            return any(lock._is_owned() for lock in list(_LOCKS))
        except RuntimeError:  # another thread made (or let go of) a lock meanwhile: look again
            continue
