"""Type stub for the compiled per-span path of the span processor (_spanpath.pyx)."""

from typing import Any, Callable

class SpanPath:
    _open: dict[int, str]
    _callers: dict[str, set[str]]
    _trace_mask: int
    open_dropped: int
    spans_ended: int
    _shutdown: bool
    observe: Callable[..., Any]
    store_span: Callable[[Any], bool] | None
    max_open_spans: int
    learn_all_spans: int
    def on_start(self, span: Any, parent_context: Any = None) -> None: ...
    def on_end(self, span: Any) -> None: ...
    def _new_edge(self, caller: str, callee: str) -> None: ...
    def _anomalies(self, anomalies: Any, name: str, span: Any, start: int, end: int) -> None: ...
    def _dropped_span(self) -> None: ...
    def _fault(self, where: str, exc: BaseException) -> None: ...
