"""One background thread with a bounded queue: work kept off the application's path.

``submit`` never blocks: it returns False when the line is full (the caller
counts the drop). Each worker is fork-safe: a forked child starts with an
empty line and no thread, and makes one on first use.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable

log = logging.getLogger("perfsdk")


class BackgroundWorker:
    """Runs ``task()`` on one daemon thread, then ``deliver(result)`` there too.

    A task that raises: with ``on_error``, ``deliver(on_error(exc))``;
    without, the exception is logged and counted in ``faults``.
    """

    def __init__(self, name: str, max_pending: int = 256,
                 on_error: Callable[[Exception], Any] | None = None) -> None:
        self.name = name
        self.max_pending = max_pending
        self.on_error = on_error
        self.faults = 0
        self._queue: queue.Queue[tuple[Callable[[], Any], Callable[[Any], None] | None]] = queue.Queue(
            maxsize=max_pending
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def submit(self, task: Callable[[], Any], deliver: Callable[[Any], None] | None = None) -> bool:
        self._ensure_thread()
        try:
            self._queue.put_nowait((task, deliver))
        except queue.Full:
            return False
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            task, deliver = self._queue.get()
            try:
                try:
                    result: Any = task()
                except Exception as exc:  # a bug in a task must not kill the worker
                    if self.on_error is None:
                        self.faults += 1
                        log.exception("perfsdk: background task on %s failed", self.name)
                        continue
                    result = self.on_error(exc)
                if deliver is not None:
                    deliver(result)
            except Exception:
                self.faults += 1
                log.exception("perfsdk: delivering a result on %s failed", self.name)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every submitted task has run (for tests and shutdown)."""
        self._queue.join()

    def _after_fork(self) -> None:
        # A forked child has no worker thread and must not inherit queued work.
        self._queue = queue.Queue(maxsize=self.max_pending)
        self._thread = None
        self._lock = threading.Lock()
