# cython: language_level=3
"""The span processor's per-span path, compiled.

OpenTelemetry calls a processor's ``on_start`` and ``on_end`` for every span on
the application's thread, so what they cost is added to every span. This base
class of ``perfsdk.instrument.PerfSpanProcessor`` does the common path in C:
read the span's fields, follow the call graph (spans in flight, the
known caller -> callee edges), store the span for the export, and feed its
duration to the detectors. What is rare stays in Python, in the subclass: a new
call edge, the anomalies a span completes, a dropped span, a fault.

Its contract is the processor's: ``on_start``/``on_end`` never raise (a fault is
counted through ``_fault``), never block on I/O, and keep only bounded state.
"""

from cpython.weakref cimport PyWeakref_NewRef
from opentelemetry.trace import StatusCode

from perfsdk._native._bankpath cimport BankPath
from perfsdk._native._pipeline import _bound_own

cdef object _ERROR = StatusCode.ERROR


cdef inline object _name_now(object entry):
    """The current name of a span in flight (``_open``'s entry), None if unknown or gone."""
    if entry is None or type(entry) is str:
        return entry
    span = entry()
    if span is None:
        return None
    try:
        return span._name  # the SDK's field
    except AttributeError:
        return span.name


cdef tuple _name_text(object name):
    """A span name that is not a ``str`` as the text it stands for (``42`` is "42"), and whether it
    could not be read at all (a ``__str__`` that raises): then ``REDACTED``, as the export writes it."""
    try:
        return str(name), False
    except Exception:
        return "REDACTED", True


cdef class SpanPath:
    """The common path of a span processor (see the module docstring).

    The subclass sets ``observe`` (``DetectorBank.observe``) and ``store_span`` (the export's
    ``SpanCollector.add_read``: the fields read here are not read again; or None), and defines the rare paths this class calls:
    ``_new_edge(caller, callee)`` (learns the edge; True if the callee is to be judged as a new
    name under a slow caller), ``_judge_newcomer(callee, caller)`` (called after the callee's own
    span was observed: a name seen for the first time has its series only then),
    ``_anomalies(anomalies, name, span, start, end)``, ``_dropped_span()`` and ``_fault(where, exc)``.
    """

    cdef public dict _open  # span id -> a weak reference to the span (or its name), for spans in flight of followed traces
    cdef public dict _callers  # callee name -> set of caller names
    cdef public object _trace_mask  # trace ids with any of these bits set are not followed
    cdef public long long open_dropped
    cdef public long long spans_ended
    cdef public long long spans_invalid  # ended before they started (the clock stepped back), or unnamed: not judged
    cdef public bint _shutdown
    cdef public long long _in_flight  # spans inside on_end now: shutdown lets go of its state only at 0
    cdef public long long spans_after_shutdown  # spans that ended once shut down: not judged, not stored
    cdef object _observe
    cdef BankPath _bank  # when ``observe`` is a detector bank's own: called in C
    cdef public object store_span
    cdef public Py_ssize_t max_open_spans
    cdef public long long learn_all_spans  # follow every trace for this many spans, then one in 16

    def __cinit__(self, *args, **kwargs):
        self._open = {}
        self._callers = {}
        self._trace_mask = 0
        self.open_dropped = 0
        self.spans_ended = 0
        self.spans_invalid = 0
        self._shutdown = False
        self._in_flight = 0
        self.spans_after_shutdown = 0
        self._observe = None
        self._bank = None
        self.store_span = None
        self.max_open_spans = 100_000
        self.learn_all_spans = 10_000

    @property
    def observe(self):
        """``observe(name, duration_ms, start_ns, error)``: where each span's duration goes."""
        return self._observe

    @observe.setter
    def observe(self, observe):
        self._observe = observe
        owner = _bound_own(observe, "observe", BankPath.observe)
        self._bank = <BankPath> owner if isinstance(owner, BankPath) else None

    def on_start(self, span, parent_context=None):
        # Remember the names of spans in flight, so a child's end can name its caller. After
        # the first ``learn_all_spans`` spans, only one trace in 16 is followed: the call
        # graph is structural, and this is the costly part.
        if self._shutdown:
            return
        try:
            try:
                context = span._context  # the SDK's field (its property costs more)
            except AttributeError:
                context = span.context
            # SpanContext is a tuple (trace id, span id, ...): indexing it skips two property calls
            if context is None or context[0] & self._trace_mask:
                return
            if len(self._open) < self.max_open_spans:
                # the span, not its name: it may be renamed (``update_name``) before a child ends;
                # weakly: one never ended must not be kept (a span is ~3 KB, its name shared)
                try:
                    self._open[context[1]] = PyWeakref_NewRef(span, None)
                except TypeError:  # a span type without weak references: its name as it starts
                    self._open[context[1]] = span.name
            else:
                self.open_dropped += 1
        except Exception as exc:
            self._fault("span processor on_start", exc)

    def _on_ending(self, span):
        # OpenTelemetry's hook before ``on_end`` (its base class's is a Python no-op, a frame a span)
        pass

    def on_end(self, span):
        self._in_flight += 1  # before the check: shutdown, having set it, waits for this to be 0
        try:
            if not self._shutdown:
                self._on_end(span)
            else:
                self.spans_after_shutdown += 1  # (the shut processor stays in the provider: counted, not lost)
        finally:
            self._in_flight -= 1

    cdef _on_end(self, span):
        cdef double duration_ms
        cdef long long first, last
        cdef BankPath bank
        try:
            try:  # the SDK's ReadableSpan: its fields directly (its properties cost ~230 ns a span)
                name, context, parent = span._name, span._context, span._parent
                start, end, status = span._start_time, span._end_time, span._status
                error = status._status_code is _ERROR
            except AttributeError:  # any other ReadableSpan: the public API
                name, context, parent = span.name, span.context, span.parent
                start, end, status = span.start_time, span.end_time, span.status
                error = status.status_code is _ERROR
            unreadable = False
            if type(name) is not str:  # OTel's API asks for a str; nothing in the SDK checks it
                name, unreadable = _name_text(name)
            judge_under = None  # a slow caller this span's name is new under
            if self._open and context is not None:
                followed = self._open.pop(context[1], None)
                if followed is not None and parent is not None:
                    caller = _name_now(self._open.get(parent[1]))
                    if caller is not None:
                        callers = self._callers.get(name)
                        if callers is None or caller not in callers:  # rare: a new edge
                            if self._new_edge(caller, name):
                                judge_under = caller
            if self.store_span is not None and not self.store_span(span, name, context, parent, start, end, status):
                self._dropped_span()
            if start is None or end is None:
                return
            first, last = start, end
            if last < first or unreadable:  # OTel stamps spans by the wall clock: one stepped back during
                self.spans_invalid += 1  # the span; or a name that cannot be read (its row is written as it
                return  # came, the name REDACTED; the detectors never see it)
            self.spans_ended += 1  # atomic: no Python code runs between the read and the write
            if self.spans_ended == self.learn_all_spans:
                self._trace_mask = 0xF
            # unsigned: last - first may pass LLONG_MAX (e.g. -2**63 .. 2**63 - 1), never 2**64
            duration_ms = <double> (<unsigned long long> last - <unsigned long long> first) / 1e6
            bank = self._bank  # a local: shutdown() may let go of it meanwhile
            if bank is not None:
                anomalies = bank.observe_c(name, duration_ms, start, error, None)
            else:
                anomalies = self._observe(name, duration_ms, start, error)
            if anomalies:
                self._anomalies(anomalies, name, span, start, end)
            if judge_under is not None:  # rare: only now does a new name have a series to judge
                self._judge_newcomer(name, judge_under)
        except Exception as exc:
            self._fault("span processor on_end", exc)
