"""Reading perfsdk's Arrow/Parquet files back, as one ``pyarrow.Table``."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from perfsdk.export.schema import FUNCTIONS_KEY, TABLES

__all__ = ["check_columns", "read", "read_file", "recover", "traced_functions"]

_TIME_COLUMN = {"spans": "start_time", "anomalies": "timestamp", "decisions": "timestamp",
                "resources": "timestamp"}
_NAME_COLUMN = {"spans": "name", "anomalies": "series", "decisions": "controller",
                "resources": "metric"}


def read(
    path: str | os.PathLike[str],
    *,
    table: str = "spans",
    service: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    name: str | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Read a file, a table directory or a whole export directory.

    ``service``, ``start``/``end`` (on the table's time column, ``start <= t <
    end``; timezone-aware datetimes) and ``name`` (span name, anomaly series,
    controller or metric) filter rows; the filters are pushed down into the
    scan. A file that is not one of the table's (a column it must have is missing, or one has
    another type) is a ``ValueError`` naming the file: never rows of nulls. A directory may hold
    both Arrow and Parquet files (an export whose format changed): both are read.

    >>> read("no/such/dir")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no/such/dir: no such file or directory
    """
    if not isinstance(table, str) or table not in TABLES:
        raise ValueError(f"table must be one of {sorted(TABLES)}, got {table!r}")
    for argument, value in (("service", service), ("name", name)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{argument} must be a string, got {value!r}")
    for argument, moment in (("start", start), ("end", end)):
        if moment is not None and not isinstance(moment, datetime):
            raise TypeError(f"{argument} must be a timezone-aware datetime, got {moment!r}")
    schema = TABLES[table]
    if columns is not None:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise TypeError(f"columns must be a list of column names, got {columns!r}")
        known = _with_partitions(schema).names
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"columns {unknown} are not in the {table} table (it has {known})")
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    wanted = columns or list(schema.names)
    filt = _filter(table, service, start, end, name)
    import pyarrow.dataset as ds  # here, not at import: it loads pandas

    if target.is_file():
        datasets = [ds.dataset(str(target), format="parquet" if target.suffix == ".parquet" else "ipc",
                               partitioning="hive", schema=_with_partitions(schema))]
    else:
        root = table_root(target, table)
        if root == target and any((target / other).is_dir() for other in TABLES):
            return _with_partitions(schema).empty_table().select(wanted)  # an export directory without this table
        # the partition columns come from the path below the table directory, also when given one partition
        datasets = [ds.dataset(files, format="ipc" if fmt == "arrow" else "parquet", partitioning="hive",
                               partition_base_dir=str(partition_root(root)), schema=_with_partitions(schema))
                    for fmt, files in _files_by_format(root).items()]
    if not datasets:
        return _with_partitions(schema).empty_table().select(wanted)
    metadata = _checked_metadata(datasets, table)  # before the scan, which would fill a foreign file with nulls
    parts = [dataset.to_table(columns=wanted, filter=filt) for dataset in datasets]
    data = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    return data.replace_schema_metadata(metadata)


def check_columns(path: str | os.PathLike[str], schema: pa.Schema, expected: pa.Schema, what: str) -> None:
    """``ValueError`` naming ``path`` unless ``schema`` (a file's) has ``expected``'s columns: each
    non-nullable one present, and each present one of its type (any integer or float for a
    number, any timestamp for a timestamp). Other columns are the file's own business.

    >>> check_columns("x.arrow", pa.schema([("a", pa.string())]), pa.schema([pa.field("a", pa.int64())]), "test")
    Traceback (most recent call last):
    ...
    ValueError: x.arrow: not a test file: column a is string, not int64
    """
    types = {field.name: field.type for field in schema}
    missing = [f.name for f in expected if not f.nullable and f.name not in types]
    wrong = [f"column {f.name} is {types[f.name]}, not {f.type}" for f in expected
             if f.name in types and not _compatible(types[f.name], f.type)]
    problems = [f"no column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"] if missing else []
    problems += wrong
    if problems:
        raise ValueError(f"{path}: not a {what} file: {'; '.join(problems)}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column of type ``actual`` reads as ``expected`` (Arrow casts the one to the other):
    the same kind -- numbers, timestamps, text (a large, view or dictionary-encoded string, as
    polars and pandas write them) -- not the same type.

    >>> _compatible(pa.dictionary(pa.int32(), pa.large_string()), pa.string()), _compatible(pa.string(), pa.int64())
    (True, False)
    """
    def kind(t: pa.DataType) -> str:
        if pa.types.is_dictionary(t):
            return kind(t.value_type)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return "number"
        if pa.types.is_timestamp(t):
            return "timestamp"
        if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
            return "text"
        return str(t)

    return bool(actual == expected or kind(actual) == kind(expected))


def _checked_metadata(datasets: list[Any], table: str) -> dict[bytes, bytes]:
    """Every file checked (``check_columns``), and their own schema metadata (perfsdk version,
    schema version, table, service): a key all files agree on keeps its value; one they differ
    on lists every value, but the traced functions, which are merged."""
    values: dict[bytes, set[bytes]] = {}
    for fragment in (fragment for dataset in datasets for fragment in dataset.get_fragments()):
        physical = fragment.physical_schema
        check_columns(fragment.path, physical, TABLES[table], f"perfsdk {table}")
        for key, value in (physical.metadata or {}).items():
            values.setdefault(key, set()).add(value)
    merged = {key: b",".join(sorted(found)) for key, found in values.items()}
    functions = values.get(FUNCTIONS_KEY.encode())
    if functions is not None:
        merged[FUNCTIONS_KEY.encode()] = json.dumps(_merged_functions(functions), sort_keys=True).encode()
    return merged


def traced_functions(spans: pa.Table | str | os.PathLike[str]) -> dict[str, list[str]]:
    """Span name -> the functions (``module:qualname``) ``@monitor`` traced under it, from the
    span files' metadata (what each process knew as each file opened, merged over all files).
    ``spans`` is a table ``read`` returned, or a path to read.

    >>> traced_functions(pa.table({"name": ["checkout"]}))  # a table perfsdk did not write
    {}
    """
    table = spans if isinstance(spans, pa.Table) else read(spans, columns=["name"])
    found = (table.schema.metadata or {}).get(FUNCTIONS_KEY.encode())
    return _merged_functions({found}) if found else {}


def _merged_functions(documents: set[bytes]) -> dict[str, list[str]]:
    """Several files' ``perfsdk.functions`` as one map (a file that is not perfsdk's own is skipped)."""
    merged: dict[str, set[str]] = {}
    for document in documents:
        try:
            functions = json.loads(document)
        except (ValueError, RecursionError):
            continue
        if not isinstance(functions, dict):
            continue
        for name, targets in functions.items():
            if isinstance(targets, list) and targets:
                merged.setdefault(str(name), set()).update(str(t) for t in targets)
    return {name: sorted(targets) for name, targets in sorted(merged.items())}


def recover(path: str | os.PathLike[str]) -> pa.Table:
    """The complete record batches of an Arrow file whose writer died mid-file.

    An unfinished ``.part-*.arrow.tmp`` has no footer, so it is not a valid
    Arrow file; but it is the magic bytes followed by an Arrow stream, and
    every batch written before the crash can be read back from that stream.
    A crash can land at any point of a file's life: before the magic or the
    schema were written whole, nothing is recovered (an empty table, with the
    table's schema when the path names the table), never an error.
    """
    data = pa.memory_map(str(path)).read_buffer()
    head = data[:8].to_pybytes()
    if not _MAGIC.startswith(head[:6]):
        raise ValueError(f"{path}: not an Arrow IPC file")
    empty = _schema_of(Path(path)).empty_table()
    if data.size <= 8:
        return empty  # killed before (or just after) the magic bytes
    try:
        reader = ipc.open_stream(pa.BufferReader(data.slice(8)))
    except (pa.ArrowInvalid, OSError):
        return empty  # killed while the schema was being written
    batches = []
    try:
        for batch in reader:
            batches.append(batch)
    except (pa.ArrowInvalid, OSError):
        pass  # the batch the crash cut short
    return pa.Table.from_batches(batches, schema=reader.schema)


_MAGIC = b"ARROW1"


def _schema_of(path: Path) -> pa.Schema:
    """The schema of the table a file belongs to (``<root>/<table>/service=.../``), if known."""
    for parent in path.parents:
        if parent.name in TABLES:
            return TABLES[parent.name]
    return pa.schema([])


def _with_partitions(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field("service", pa.string())).append(pa.field("date", pa.string()))


#: What reading a file that is not a whole table file raises (``read`` and ``read_file`` name it in most).
UNREADABLE = (ValueError, TypeError, OSError, pa.ArrowException)


def unreadable(path: str | os.PathLike[str], exc: BaseException) -> str:
    """``"FILE: why"`` for a file that could not be read (the error may name it already)."""
    why = str(exc)
    return why if why.startswith(str(path)) else f"{path}: {why}"


def read_readable(path: str | os.PathLike[str], *, table: str = "spans",
                  columns: list[str] | None = None) -> tuple[pa.Table, list[str]]:
    """``read(path, table=table, columns=columns)`` without the files that cannot be read (cut
    short by a crash, or of another schema), and those files, each as ``"FILE: why"``
    (``unreadable``): one bad file does not end the whole directory, as ``perfsdk analyze``
    reads it. ``ValueError`` naming them all when none reads; a missing ``path`` is ``read``'s
    ``FileNotFoundError``. ``read`` as it is while every file reads; file by file (each checked
    with ``read_file``) only to find out which do not."""
    try:
        return read(path, table=table, columns=columns), []
    except FileNotFoundError:
        raise
    except UNREADABLE:
        pass  # some file does not read: which, is found below
    target = Path(path)
    root = table_root(target, table)
    files = [str(target)] if target.is_file() else sorted(
        f for found in _files_by_format(root).values() for f in found)
    tables, skipped = [], []
    for file in files:
        try:
            read_file(file, table=table)  # as analyze checks a file, and names one that fails
            tables.append(read(file, table=table, columns=columns))
        except UNREADABLE as exc:
            skipped.append(unreadable(file, exc))
    if not tables:
        raise ValueError(f"no {table} file under {path} could be read: " + "; ".join(skipped))
    data = pa.concat_tables(tables)  # the metadata of the first; the traced functions of all
    documents = {found for t in tables if (found := (t.schema.metadata or {}).get(FUNCTIONS_KEY.encode()))}
    if documents:
        data = data.replace_schema_metadata({**(data.schema.metadata or {}), FUNCTIONS_KEY.encode():
                                             json.dumps(_merged_functions(documents), sort_keys=True).encode()})
    return data, skipped


def table_root(path: Path, table: str) -> Path:
    """Where ``table``'s files are under ``path``: its directory in an export directory, else
    ``path`` itself (a table directory, or one of its partitions)."""
    return path / table if (path / table).is_dir() else path


def partition_root(path: Path) -> Path:
    """The table directory that ``path`` (a table directory, or one of its ``service=``/``date=``
    partitions) belongs to: the directory the partition columns are read relative to.

    >>> partition_root(Path("perf-data/spans/service=shop/date=2026-01-01")).as_posix()
    'perf-data/spans'
    """
    while path.name.startswith(("service=", "date=")):  # up through the partitions
        path = path.parent
    return path


def read_file(path: str | os.PathLike[str], table: str | None = None) -> pa.Table:
    """One published file (Arrow IPC or Parquet), whole, without its partition columns; with
    ``table``, checked to be one of that table's files (``check_columns``). A file that is not
    Arrow or Parquet, or is cut short, is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            data = pq.read_table(path)
        else:
            with pa.memory_map(str(path)) as source:
                data = ipc.open_file(source).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: not a complete Arrow IPC or Parquet file ({exc})") from None
    if table is not None:
        check_columns(path, data.schema, TABLES[table], f"perfsdk {table}")
    return data


def _files_by_format(root: Path) -> dict[str, list[str]]:
    """A table directory's files by format: ``.parquet`` ones, and every other one as Arrow IPC
    (a foreign file is then named as not one, never skipped); none when no file is either
    (a directory of something else). Hidden ones are skipped, as ``pyarrow.dataset`` skips them."""
    found: dict[str, list[str]] = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith((".", "_")))
        for name in sorted(files):
            if not name.startswith((".", "_")):
                fmt = "parquet" if name.endswith(".parquet") else "arrow"
                found.setdefault(fmt, []).append(os.path.join(directory, name))
    if not any(name.endswith((".arrow", ".parquet")) for files in found.values() for name in files):
        return {}
    return found


def _filter(table: str, service: str | None, start: datetime | None, end: datetime | None,
            name: str | None) -> Any:
    import pyarrow.dataset as ds

    conditions = []
    if service is not None:
        conditions.append(ds.field("service.name") == service)
    if name is not None:
        conditions.append(ds.field(_NAME_COLUMN[table]) == name)
    for bound, op in ((start, "ge"), (end, "lt")):
        if bound is not None:
            if bound.tzinfo is None:
                raise ValueError("start and end must be timezone-aware datetimes")
            field = ds.field(_TIME_COLUMN[table])
            value = pa.scalar(bound, type=TABLES[table].field(_TIME_COLUMN[table]).type)
            conditions.append(field >= value if op == "ge" else field < value)
    if not conditions:
        return None
    combined = conditions[0]
    for c in conditions[1:]:
        combined = combined & c
    return combined
