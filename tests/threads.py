"""Helpers the tests share for waiting on other threads and running checks in a forked child."""

from __future__ import annotations

import os
import time


def wait_until(condition, timeout: float = 5.0) -> None:
    """Poll ``condition()`` until it holds; fail the test if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def in_child(check) -> bool:
    """Run ``check()`` in a forked child; its truth comes back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            ok = bool(check())
        finally:
            os.write(write, b"1" if ok else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    return answer == b"1"
