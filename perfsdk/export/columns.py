"""Arrow columns from Python values, built from buffers rather than with ``pa.array``.

``pa.array`` imports pandas the first time it is given anything but a numpy
array (pyarrow asks whether the values are a pandas object), and so do
``Table.from_pylist`` and ``RecordBatch.from_pydict``. In a host process that
is 33,000 more objects for every full garbage collection to scan (a full
collection about four times as long, measured beside OpenTelemetry and
numpy), for a library perfsdk's writers never use. So the writers that run
inside the host build their columns here, from numpy buffers; the offline
tools (``perfsdk analyze``) may use pandas freely.

>>> import pyarrow as pa
>>> column(["GET /cart", None, "é"], pa.string()).to_pylist()
['GET /cart', None, 'é']
>>> column([[("k", "v")], []], pa.map_(pa.string(), pa.string())).to_pylist()
[[('k', 'v')], []]
>>> batch_from_rows([{"a": 1.5}, {"a": None}], pa.schema([("a", pa.float64())])).to_pydict()
{'a': [1.5, None]}
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import chain
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

__all__ = ["batch_from_rows", "column", "nanoseconds", "strings", "validity"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def strings(values: Sequence[str | None]) -> pa.StringArray:
    """A string column (``None`` is null; characters UTF-8 cannot encode become ``?``).

    Columns with few distinct values (span names, kinds, status codes) encode
    each distinct value once.
    """
    n = len(values)
    distinct = dict.fromkeys(values)
    if len(distinct) * 4 > n:
        encoded = [b"" if v is None else v.encode("utf-8", "replace") for v in values]
    else:
        encoding = {v: b"" if v is None else v.encode("utf-8", "replace") for v in distinct}
        encoded = list(map(encoding.__getitem__, values))
    offsets = _offsets(encoded)
    if n and offsets[-1] < 0:
        raise OverflowError("a string column of 2 GiB or more: write smaller batches")
    nulls = validity([v is not None for v in values]) if None in distinct else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)), nulls)


def nanoseconds(value: Any) -> int:
    """A timestamp as integer nanoseconds since the epoch (a naive datetime is read as UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    return int(value)


def _fixed_width(values: Sequence[Any] | np.ndarray, type_: pa.DataType, dtype: Any,
                 convert: Callable[[Any], Any] = lambda v: v) -> pa.Array:
    """A numeric or timestamp column; a numpy array of the right dtype is used as it is."""
    if isinstance(values, np.ndarray):
        data, nulls = np.ascontiguousarray(values, dtype=dtype), None
    else:
        data = np.array([0 if v is None else convert(v) for v in values], dtype=dtype)
        nulls = validity([v is not None for v in values])
    return pa.Array.from_buffers(type_, len(data), [nulls, pa.py_buffer(data)])


def _booleans(values: Sequence[Any]) -> pa.Array:
    bits = np.packbits(np.array([bool(v) for v in values], dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [validity([v is not None for v in values]),
                                                           pa.py_buffer(bits)])


def _lists(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """list<T> and map<K, V> columns (a map as a dict or as pairs; ``None`` is empty)."""
    if pa.types.is_map(type_):
        maps = [{} if v is None else (v if type(v) is dict else dict(v)) for v in values]
        keys = column(list(chain.from_iterable(maps)), type_.key_type)
        items = column(list(chain.from_iterable(map(dict.values, maps))), type_.item_type)
        return pa.MapArray.from_arrays(_offsets_array(maps), keys, items, type=type_)
    lists = [() if v is None else v for v in values]
    flat = column(list(chain.from_iterable(lists)), type_.value_type)
    return pa.ListArray.from_arrays(_offsets_array(lists), flat, type=type_)


def _offsets(entries: Sequence[Any]) -> np.ndarray:
    """Where each entry starts in the concatenation of all (and where the last ends)."""
    offsets = np.zeros(len(entries) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, entries), dtype=np.int64, count=len(entries)), out=offsets[1:])
    return offsets


def _offsets_array(entries: Sequence[Any]) -> pa.Array:
    offsets = _offsets(entries)
    return pa.Array.from_buffers(pa.int32(), len(offsets), [None, pa.py_buffer(offsets)])


def column(values: Sequence[Any] | np.ndarray, type_: pa.DataType) -> pa.Array:
    """An Arrow column of ``type_`` from Python values (``None`` is null) or a numpy array.

    The types perfsdk's tables use: string, float64, int64, bool, timestamps
    (datetimes or integer nanoseconds), and lists and maps of those.
    """
    if pa.types.is_string(type_):
        return strings(list(values))
    if pa.types.is_float64(type_):
        return _fixed_width(values, type_, np.float64)
    if pa.types.is_int64(type_):
        return _fixed_width(values, type_, np.int64)
    if pa.types.is_timestamp(type_) and type_.unit == "ns":
        return _fixed_width(values, type_, np.int64, nanoseconds)
    if pa.types.is_boolean(type_):
        return _booleans(list(values))
    if pa.types.is_map(type_) or pa.types.is_list(type_):
        return _lists(list(values), type_)
    raise TypeError(f"no column builder for Arrow type {type_}")


def batch_from_rows(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of ``schema`` from rows keyed by column name (a missing key is null)."""
    return pa.RecordBatch.from_arrays(
        [column([row.get(field.name) for row in rows], field.type) for field in schema], schema=schema)


def validity(valid: Sequence[bool] | np.ndarray) -> pa.Buffer | None:
    """A validity bitmap, or None when every value is there."""
    flags = np.asarray(valid, dtype=bool)
    if flags.all():
        return None
    return pa.py_buffer(np.packbits(flags, bitorder="little"))
