"""Type stub for the compiled per-span path of the span processor (_spanpath.pyx)."""

from typing import Any, Callable

class SpanPath:
    _open: dict[int, Any]  # span id -> weakref.ref to the span (or its name)
    _callers: dict[str, set[str]]
    _trace_mask: int
    open_dropped: int
    spans_ended: int
    spans_invalid: int
    _shutdown: bool
    _in_flight: int
    spans_after_shutdown: int
    observe: Callable[..., Any]  # a property: a DetectorBank's own observe is called in C
    store_span: Callable[..., bool] | None
    max_open_spans: int
    learn_all_spans: int
    def on_start(self, span: Any, parent_context: Any = None) -> None: ...
    def _on_ending(self, span: Any) -> None: ...
    def on_end(self, span: Any) -> None: ...
