"""SQLAlchemy engines whose connections come from an ``AdaptivePool``.

One line makes an engine's pool adaptive::

    engine = sqlalchemy.create_engine(url, poolclass=AdaptiveSQLAlchemyPool, max_size=16)

``AdaptiveSQLAlchemyPool`` is a SQLAlchemy ``Pool``: SQLAlchemy keeps doing
what it does around a pool -- its connection records, ``pool_pre_ping``,
``pool_recycle``, reset on return, invalidation, and the pool events
(``connect``, ``checkout``, ``checkin``, ``reset``, ``close``...) -- while
the ``AdaptivePool`` inside lends the records, first come first served, and
sizes itself. ``create_engine`` passes it the ``AdaptivePool`` arguments
given by name (``min_size``, ``max_size``, ``size``, ``controller``,
``mode``, ``name``, ``on_decision``, ``meter_provider``); its
``pool_timeout`` is the wait for a connection. ``engine.pool.adaptive`` is
the ``AdaptivePool`` (``stats()``, ``decisions()``, ``resize()``).

The pool opens connections ahead of time, so ``pool_pre_ping`` pings every
record it lends (SQLAlchemy skips the ping for a record it has just connected,
which here may have sat idle for minutes). ``engine.dispose()`` serves the
requests already waiting with the connections that come back, as QueuePool
does; ``engine.dispose(close=False)`` (in a forked child) ends the old pool's
threads and lets its connections go unclosed. Either way the fresh pool has the
old one's name, and its metrics' counters go on from the old one's counts
(``perfsdk.adapt.pool_metrics``).
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import exc
from sqlalchemy.pool import ConnectionPoolEntry, Pool
from sqlalchemy.pool.base import _ConnectionRecord

from perfsdk.adapt.decision import Decision
from perfsdk.adapt.pool import AdaptivePool, PoolClosed, PoolTimeout
from perfsdk.adapt.pool_controller import PoolController

__all__ = ["AdaptiveSQLAlchemyPool"]


class AdaptiveSQLAlchemyPool(Pool):
    """A SQLAlchemy ``Pool`` backed by an ``AdaptivePool`` (see the module docstring).

    Examples
    --------
    >>> import sqlalchemy
    >>> engine = sqlalchemy.create_engine("sqlite://", poolclass=AdaptiveSQLAlchemyPool, max_size=4,
    ...                                   controller=None, connect_args={"check_same_thread": False})
    >>> with engine.connect() as conn:
    ...     conn.execute(sqlalchemy.text("SELECT 1 + 1")).scalar()
    2
    >>> engine.pool.adaptive.stats()["in_use"]
    0
    >>> engine.dispose()
    """

    def __init__(
        self, creator: Callable[..., Any], min_size: int = 1, max_size: int = 32, size: int | None = None,
        timeout: float = 30.0, controller: PoolController | str | None = "default", mode: str = "auto",
        name: str = "sqlalchemy", on_decision: Callable[[Decision], Any] | None = None,
        meter_provider: Any = None, warm: bool = True, **kw: Any,
    ) -> None:  # no bare *: create_engine passes on only positional-or-keyword names
        super().__init__(creator, **kw)
        self._settings = dict(min_size=min_size, max_size=max_size, size=size, timeout=timeout, mode=mode,
                              name=name, on_decision=on_decision, meter_provider=meter_provider)
        self.adaptive = AdaptivePool(lambda: _ConnectionRecord(self), close_connection=_close_record,
                                     controller=controller, warm=warm, **self._settings)

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            record: _ConnectionRecord = self.adaptive.acquire()
        except PoolTimeout as timeout:
            raise exc.TimeoutError(str(timeout), code="3o7r") from timeout
        except PoolClosed as closed:  # a checkout that raced engine.dispose(): the engine has a new pool
            raise exc.InvalidRequestError(f"{closed} (engine.dispose() replaced it): connect again") from closed
        record.fresh = False  # opened ahead of time: pre-ping it (a reconnect now marks it fresh again)
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        self.adaptive.release(record)

    def recreate(self) -> "AdaptiveSQLAlchemyPool":
        """The same pool afresh (``engine.dispose()``), opening nothing until it is used; a controller's
        settings and learned table carry over. Called without ``dispose`` (``engine.dispose(close=False)``,
        in a forked child), the old pool ends its threads and lets its connections go unclosed."""
        self.logger.info("Pool recreating")
        if not self.adaptive.closed:
            self.adaptive.close(timeout=None, serve_waiting=True, close_idle=False)
        old = self.adaptive.controller
        controller = None if old is None else old.successor()
        return self.__class__(
            self._creator, controller=controller, recycle=self._recycle, echo=self.echo,
            logging_name=self._orig_logging_name, reset_on_return=self._reset_on_return,
            pre_ping=self._pre_ping, _dispatch=self.dispatch, dialect=self._dialect, warm=False, **self._settings)

    def dispose(self) -> None:
        """Close the idle connections; those checked out close when they come back, or serve the
        requests already waiting (as QueuePool serves them)."""
        self.adaptive.close(timeout=None, serve_waiting=True)
        self.logger.info("Pool disposed. %s", self.status())

    def status(self) -> str:
        s = self.adaptive.stats()
        return (f"AdaptiveSQLAlchemyPool {s['name']!r}: size {s['size']} (target {s['target']}, "
                f"{s['min_size']}..{s['max_size']}), {s['idle']} idle, {s['in_use']} checked out, "
                f"{s['waiting']} waiting")

    def size(self) -> int:
        return self.adaptive.target

    def timeout(self) -> float:
        return self.adaptive.timeout

    def checkedin(self) -> int:
        return int(self.adaptive.stats()["idle"])

    def checkedout(self) -> int:
        return int(self.adaptive.stats()["in_use"])


def _close_record(record: ConnectionPoolEntry) -> None:
    record.close()
