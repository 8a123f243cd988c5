"""Codecs for tables: pandas DataFrame/Series, polars DataFrame/LazyFrame, pyarrow
Table/RecordBatchReader, all stored as Parquet blobs (columnar, compressed, typed).

Imported only when a hint names one of these classes, so pandas, polars and pyarrow
stay optional. Values are streamed into the blob store while they are written.
"""

from __future__ import annotations

import contextlib
import typing
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from heddle._errors import TypeMismatchError
from heddle._types._base import Codec
from heddle._types.blobio import local_path, read_blob, write_blob
from heddle._types.handles import table_parts_of

T = TypeVar("T")

COMPRESSION = "snappy"  # pyarrow's default: cheap, and what the benchmark floor uses
ROW_GROUP_ROWS = 1024 * 1024

# (top-level module, class name) of every table class this module stores.
TABLE_CLASSES = {
    ("pandas", "DataFrame"): "pandas.DataFrame",
    ("pandas", "Series"): "pandas.Series",
    ("polars", "DataFrame"): "polars.DataFrame",
    ("polars", "LazyFrame"): "polars.LazyFrame",
    ("pyarrow", "Table"): "pyarrow.Table",
    ("pyarrow", "RecordBatchReader"): "pyarrow.RecordBatchReader",
}


# The kinds that hold a whole table, and so stand in for each other at a task boundary
# (converted through Arrow), and for a stored heddle.DataFrame handle.
FRAME_KINDS = frozenset(
    {
        "pandas.DataFrame",
        "polars.DataFrame",
        "polars.LazyFrame",
        "pyarrow.Table",
        "pyarrow.RecordBatchReader",
    }
)


def table_kind(hint: Any) -> str | None:
    """ "pandas.DataFrame", ... for a table class (or a subclass), else None.

    Looks at module names only, so asking never imports pandas or polars.
    """
    cls = typing.get_origin(hint) or hint
    if not isinstance(cls, type):
        return None
    for c in cls.__mro__:
        kind = TABLE_CLASSES.get((c.__module__.partition(".")[0], c.__name__))
        if kind is not None:
            return kind
    return None


# -- Parquet blobs ----------------------------------------------------------------------


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: all but floating point, where pyarrow's
    default tries a dictionary, finds the values distinct, and throws the work away."""
    return [f.name for f in schema if not pa.types.is_floating(f.type)]


def write_arrow(table: pa.Table) -> str:
    def fill(f: Any) -> None:
        pq.write_table(
            table,
            f,
            compression=COMPRESSION,
            row_group_size=ROW_GROUP_ROWS,
            use_dictionary=dictionary_columns(table.schema),
        )

    return write_blob(fill)


def write_batches(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> tuple[str, int]:
    """Stream record batches into one Parquet blob; returns (key, rows)."""
    rows = 0

    def fill(f: Any) -> None:
        nonlocal rows
        with pq.ParquetWriter(
            f, schema, compression=COMPRESSION, use_dictionary=dictionary_columns(schema)
        ) as writer:
            for batch in batches:
                rows += batch.num_rows
                writer.write_batch(batch)

    return write_blob(fill), rows


def read_arrow(source: Any, columns: list[str] | None = None) -> pa.Table:
    if isinstance(source, Path):
        return pq.read_table(source, columns=columns, memory_map=True)
    return pq.read_table(source, columns=columns)


def pandas_to_arrow(df: Any) -> pa.Table:
    try:
        return pa.Table.from_pandas(df, preserve_index=None)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise TypeMismatchError(
            "a DataFrame Parquet can store", f"a DataFrame it cannot ({exc})"
        ) from exc


def arrow_to_pandas(table: pa.Table) -> Any:
    return table.to_pandas()


# -- same-process reuse -------------------------------------------------------------------
#
# A frame decoded in this process and passed on unchanged to another task is not written
# and hashed again, and a blob read twice is not parsed twice. pandas frames are handed
# out as shallow copies of a private original: copy-on-write (pandas >= 3) guarantees an
# in-place change to a copy replaces its blocks, which the fingerprint detects.


class IdentityMap:
    """Values attached to live objects by identity (frames are unhashable), dropped when
    the object dies."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref[Any], Any]] = {}

    def set(self, obj: Any, value: Any) -> None:
        oid = id(obj)

        def forget(ref: weakref.ref[Any]) -> None:
            entry = self._entries.get(oid)
            if entry is not None and entry[0] is ref:
                del self._entries[oid]

        # An object that is not weak-referenceable is simply not remembered.
        with contextlib.suppress(TypeError):
            self._entries[oid] = (weakref.ref(obj, forget), value)

    def get(self, obj: Any) -> Any:
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj:
            return None
        return entry[1]


_originals: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_handed_out = IdentityMap()


def _pandas_fingerprint(df: Any) -> Any:
    try:
        mgr = df._mgr
        return (
            tuple(b.values for b in mgr.blocks),
            tuple(mgr.axes),
            dict(df.attrs),
        )
    except Exception:
        return None


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    blocks_a, axes_a, attrs_a = a
    blocks_b, axes_b, attrs_b = b
    return (
        len(blocks_a) == len(blocks_b)
        and len(axes_a) == len(axes_b)
        and all(x is y for x, y in zip(blocks_a, blocks_b, strict=True))
        and all(x is y for x, y in zip(axes_a, axes_b, strict=True))
        and attrs_a == attrs_b
    )


def hand_out_pandas(meta: dict[str, Any], original: Any) -> Any:
    """A shallow copy of a private original, remembered with the plain it came from."""
    copy = original.copy(deep=False)
    fp = _pandas_fingerprint(copy)
    if fp is not None:
        _handed_out.set(copy, (original, fp, meta))
    return copy


def known_pandas_plain(df: Any) -> dict[str, Any] | None:
    """The plain of a frame this process decoded and nobody changed since."""
    entry = _handed_out.get(df)
    if entry is None:
        return None
    _original, fp, meta = entry
    return dict(meta) if _same(fp, _pandas_fingerprint(df)) else None


_arrow_plains = IdentityMap()
_arrow_tables: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


# -- codecs --------------------------------------------------------------------------


def _meta(table: pa.Table | pa.Schema, key: str, rows: int, kind: str) -> dict[str, Any]:
    schema = table if isinstance(table, pa.Schema) else table.schema
    return {"t": "parquet", "k": key, "rows": rows, "cols": list(schema.names), "kind": kind}


class TableCodec(Codec):
    """One table class, stored as one Parquet blob: {"t": "parquet", "k": key, ...}."""

    def __init__(self, hint: Any, kind: str) -> None:
        super().__init__(hint)
        self.kind = kind
        self.cls: type = typing.get_origin(hint) or hint
        self.exact_types = (self.cls,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        try:
            if isinstance(value, self.cls):
                return _ENCODERS[self.kind](value)
            plain = self._converted(value)
        except TypeMismatchError as exc:
            raise TypeMismatchError(exc.expected, exc.given, path) from None
        if plain is None:
            raise self.mismatch(value, path)
        return plain

    def _converted(self, value: Any) -> dict[str, Any] | None:
        """Another kind of frame, or a heddle.DataFrame handle, stored for this kind (as
        Flyte 2 converts them): the task receives the kind it declared. None if the value
        is neither."""
        if self.kind not in FRAME_KINDS:
            return None
        handle = table_parts_of(value)
        if handle is not None:
            parts, rows, columns = handle
            if len(parts) == 1:  # already one Parquet blob: passed on without a read
                meta = {"t": "parquet", "k": parts[0], "rows": rows, "kind": self.kind}
                return {**meta, "cols": list(columns or [])}
            table = concat_parts(parts)
            return _meta(table, write_arrow(table), table.num_rows, self.kind)
        source = table_kind(type(value))
        if source not in FRAME_KINDS:
            return None
        key, rows, columns = stored_frame(value)
        return {"t": "parquet", "k": key, "rows": rows, "cols": columns, "kind": self.kind}

    def from_plain(self, plain: Any) -> Any:
        return _DECODERS[self.kind](plain)


def _encode_pandas(df: Any) -> dict[str, Any]:
    known = known_pandas_plain(df)
    if known is not None:
        return known
    table = pandas_to_arrow(df)
    return _meta(table, write_arrow(table), table.num_rows, "pandas.DataFrame")


def _decode_pandas(plain: dict[str, Any]) -> Any:
    key = plain["k"]
    original = _originals.get(key)
    if original is None:
        original = read_blob(key, lambda src: arrow_to_pandas(read_arrow(src)))
        _originals[key] = original
    return hand_out_pandas(dict(plain), original)


def _encode_series(series: Any) -> dict[str, Any]:
    from heddle._types._base import codec_for

    frame = series.to_frame(name="values")
    table = pandas_to_arrow(frame)
    meta = _meta(table, write_arrow(table), table.num_rows, "pandas.Series")
    meta["name"] = codec_for(Any).to_plain(series.name)
    return meta


def _decode_series(plain: dict[str, Any]) -> Any:
    from heddle._types._base import codec_for

    df = read_blob(plain["k"], lambda src: arrow_to_pandas(read_arrow(src)))
    return df["values"].rename(codec_for(Any).from_plain(plain.get("name")))


def _encode_polars(df: Any) -> dict[str, Any]:
    table = df.to_arrow()
    return _meta(table, write_arrow(table), table.num_rows, "polars.DataFrame")


def _decode_polars(plain: dict[str, Any]) -> Any:
    import polars as pl

    return read_blob(plain["k"], lambda src: pl.from_arrow(read_arrow(src)))


def _encode_lazy(lf: Any) -> dict[str, Any]:
    return _encode_polars(lf.collect())


def _decode_lazy(plain: dict[str, Any]) -> Any:
    import polars as pl

    # Verified once here; the scan then reads the local file lazily (with pushdown).
    return pl.scan_parquet(local_path(plain["k"]))


def _encode_arrow(table: pa.Table) -> dict[str, Any]:
    known = _arrow_plains.get(table)
    if known is not None:
        return dict(known)
    plain = _meta(table, write_arrow(table), table.num_rows, "pyarrow.Table")
    _arrow_plains.set(table, plain)
    _arrow_tables[plain["k"]] = table
    return plain


def _decode_arrow(plain: dict[str, Any]) -> pa.Table:
    key = plain["k"]
    table = _arrow_tables.get(key)
    if table is None:
        table = read_blob(key, read_arrow)
        _arrow_tables[key] = table
    _arrow_plains.set(table, dict(plain))
    return table


def _encode_reader(reader: pa.RecordBatchReader) -> dict[str, Any]:
    key, rows = write_batches(reader.schema, iter(reader))
    return _meta(reader.schema, key, rows, "pyarrow.RecordBatchReader")


def _decode_reader(plain: dict[str, Any]) -> pa.RecordBatchReader:
    path = local_path(plain["k"])
    pf = pq.ParquetFile(path, memory_map=True)
    return pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches())


_ENCODERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "pandas.DataFrame": _encode_pandas,
    "pandas.Series": _encode_series,
    "polars.DataFrame": _encode_polars,
    "polars.LazyFrame": _encode_lazy,
    "pyarrow.Table": _encode_arrow,
    "pyarrow.RecordBatchReader": _encode_reader,
}
_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "pandas.DataFrame": _decode_pandas,
    "pandas.Series": _decode_series,
    "polars.DataFrame": _decode_polars,
    "polars.LazyFrame": _decode_lazy,
    "pyarrow.Table": _decode_arrow,
    "pyarrow.RecordBatchReader": _decode_reader,
}


def table_codec(hint: Any) -> Codec:
    kind = table_kind(hint)
    assert kind is not None
    return TableCodec(hint, kind)


def stored_frame(frame: Any) -> tuple[str, int, list[str]]:
    """A frame of any kind as one stored Parquet blob: (key, rows, columns). A frame this
    process decoded (or stored) and nobody changed since is not written again."""
    kind = table_kind(type(frame))
    known = None
    if kind == "pandas.DataFrame":
        known = known_pandas_plain(frame)
    elif kind == "pyarrow.Table":
        known = _arrow_plains.get(frame)
    if known is not None:
        return known["k"], known["rows"], list(known["cols"])
    table = to_arrow_table(frame)
    key = write_arrow(table)
    if kind == "pyarrow.Table":
        _arrow_plains.set(frame, _meta(table, key, table.num_rows, "pyarrow.Table"))
    return key, table.num_rows, list(table.schema.names)


def concat_parts(parts: Sequence[str], columns: list[str] | None = None) -> pa.Table:
    """The Parquet parts of a stored table read as one arrow Table."""
    tables = [read_blob(key, lambda src: read_arrow(src, columns)) for key in parts]
    if not tables:
        return pa.table({})
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def to_arrow_table(frame: Any) -> pa.Table:
    """Any supported frame as an arrow Table (for heddle.DataFrame parts)."""
    kind = table_kind(type(frame))
    if kind == "pandas.DataFrame":
        return pandas_to_arrow(frame)
    if kind == "pandas.Series":
        return pandas_to_arrow(frame.to_frame())
    if kind == "polars.DataFrame":
        return frame.to_arrow()
    if kind == "polars.LazyFrame":
        return frame.collect().to_arrow()
    if kind == "pyarrow.Table":
        return frame
    if kind == "pyarrow.RecordBatchReader":
        return frame.read_all()
    raise TypeMismatchError("a pandas/polars DataFrame or pyarrow Table", type(frame).__name__, "")


def convert_arrow(table: pa.Table, as_type: Any) -> Any:
    """An arrow Table as ``as_type``: pd.DataFrame, pl.DataFrame, pl.LazyFrame or pa.Table."""
    kind = "pyarrow.Table" if as_type is None else table_kind(as_type)
    if kind == "pyarrow.Table":
        return table
    if kind == "pandas.DataFrame":
        return arrow_to_pandas(table)
    if kind in ("polars.DataFrame", "polars.LazyFrame"):
        import polars as pl

        df: Any = pl.from_arrow(table)
        return df.lazy() if kind == "polars.LazyFrame" else df
    if kind == "pyarrow.RecordBatchReader":
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())
    raise TypeMismatchError(
        "pd.DataFrame, pl.DataFrame, pl.LazyFrame or pa.Table", repr(as_type), ""
    )
