"""The bottom layer: what every other part of perfsdk shares at run time.

- ``Faults``: one fault counter type; every ``stats()`` reads one. ``log_quietly``: how
  perfsdk logs on the application's path and its workers (a raising log handler is counted).
- ``Worker``: the one background worker (bounded queue, batches, flush with a
  deadline, drop counter), used by every background job.
- ``at_fork``: the fork-reset registry every object with threads or locks joins.
- ``owned_lock``: the locks perfsdk's flush and shutdown meet, which know their holder, so
  ``inside_perfsdk()`` tells a call from inside perfsdk (a signal handler) that must not wait.
- ``HOOKS``: what the running ``perfsdk.init()`` offers the layers below it
  (the tracer ``@monitor`` uses, where decisions go); ``DECISION_DELIVERY``, the
  worker that delivers them (and does the fleet's file work); ``USER_CALLBACKS``, the
  one that runs the user's ``on_decision`` callbacks, apart.
- ``call_user``: runs a user callback under OpenTelemetry's
  suppress-instrumentation key, so the callback's own I/O is never traced back
  into the detectors.
- ``lazy_names``: packages whose names load on first use (``import perfsdk``
  loads almost nothing); ``long_lived_startup``: what perfsdk's start-up makes does not
  bring on a full garbage collection in the host.
- ``TRACED_FUNCTIONS``: the function each ``@monitor`` span name stands for
  (written into the span files, for ``perfsdk testgen --bench-out``).
- ``write_atomically`` / ``replace_atomically``: files written whole or not at all.
- ``check_*``: argument validation (``TypeError`` for a wrong type, ``ValueError``
  for a wrong value, naming the argument).

It imports nothing from perfsdk, and every other package may import it.
"""

from perfsdk._runtime.callbacks import call_guarded, call_user, suppressed
from perfsdk._runtime.faults import FAULTS, Faults, log_quietly
from perfsdk._runtime.files import fsync_path, replace_atomically, write_atomically
from perfsdk._runtime.forks import at_fork
from perfsdk._runtime.hooks import DECISION_DELIVERY, HOOKS, USER_CALLBACKS, Hooks
from perfsdk._runtime.lazy import lazy_names
from perfsdk._runtime.locks import held_here, inside_perfsdk, owned_lock
from perfsdk._runtime.startup import long_lived_startup
from perfsdk._runtime.traced import TRACED_FUNCTIONS, TracedFunctions
from perfsdk._runtime.validate import (
    check_bool, check_callable, check_choice, check_int, check_number, check_str,
)
from perfsdk._runtime.worker import Worker, park_shared_workers

__all__ = [
    "DECISION_DELIVERY", "FAULTS", "Faults", "HOOKS", "Hooks", "TRACED_FUNCTIONS", "TracedFunctions", "USER_CALLBACKS",
    "Worker", "at_fork", "call_guarded", "call_user", "check_bool", "check_callable", "check_choice", "check_int",
    "check_number", "check_str", "fsync_path", "held_here", "inside_perfsdk", "lazy_names", "log_quietly",
    "long_lived_startup", "owned_lock", "park_shared_workers", "replace_atomically", "suppressed", "write_atomically",
]
