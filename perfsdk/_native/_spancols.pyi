"""Type stub for the compiled span columns of the Arrow export (_spancols.pyx)."""

from typing import Any, Callable, Iterable

import numpy as np

KIND_NAMES: tuple[str, ...]
STATUS_NAMES: tuple[str, ...]

class SpanColumns:
    capacity: int
    size: int
    trace_hi: np.ndarray
    trace_lo: np.ndarray
    span_id: np.ndarray
    parent_id: np.ndarray
    has_parent: np.ndarray
    start: np.ndarray
    end: np.ndarray
    name: np.ndarray
    kind: np.ndarray
    status: np.ndarray
    scope: np.ndarray
    service: np.ndarray
    attr_ends: np.ndarray
    strings: list[str]
    keys: list[str]
    values: list[Any]
    messages: list[tuple[int, str]]
    opened: float
    nbytes: int
    def __init__(self, capacity: int) -> None: ...
    def __len__(self) -> int: ...
    def append(self, span: Any) -> bool: ...

class SpanCollector:
    current: SpanColumns
    chunk_rows: int
    chunk_bytes: int
    max_bytes: int
    queued_bytes: int
    dropped: int
    shipped: int
    closed: bool
    timeout: float
    @property
    def queued_chunks(self) -> int: ...
    def __init__(self, chunk_rows: int = 4096, max_bytes: int = 64 * 2**20, timeout: float = 0.0,
                 wake: Callable[[], Any] | None = None, chunk_bytes: int = 0) -> None: ...
    def add(self, span: Any) -> bool: ...
    def add_read(self, span: Any, name: Any, context: Any, parent: Any, start: Any, end: Any, status: Any) -> bool: ...
    def close(self) -> None: ...
    def seal(self, timeout: float = 0.0, older_than_s: float = 0.0) -> bool: ...
    def take(self, max_chunks: int) -> list[SpanColumns]: ...
    def done(self, chunks: Iterable[SpanColumns]) -> None: ...
    def reset(self) -> None: ...

def kept_attributes(keys: list[str], texts: list[str | None], ends: np.ndarray,
                    rows: int) -> tuple[list[str], list[str], np.ndarray]: ...
def redact_texts(memos: dict[type, dict[tuple[str, Any], str | None]], keys: list[str], values: list[Any],
                 redact: Callable[[str, Any], str | None], max_entries: int) -> tuple[list[str | None], int]: ...
def take_strings(table: list[bytes], codes: np.ndarray) -> tuple[np.ndarray, bytes, np.ndarray | None]: ...
