"""File, Dir and DataFrame: references to data in the object store.

A reference is uploaded when it crosses a task boundary (content-addressed, so an
unchanged file is stored and hashed once) and downloaded lazily when a task opens it.
Passing a reference on to another task never reads the data.
"""

from __future__ import annotations

import io
import os
import typing
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from heddle._errors import HeddleError, StorageError, TypeMismatchError
from heddle._types import Codec, register
from heddle._types.handles import TableParts, register_table_handle
from heddle._types.lazy import is_table_hint
from heddle._types.sink import get_sink

__all__ = ["DataFrame", "Dir", "File"]


def _blobs() -> Any:
    """The session's BlobStore (the sink registered by heddle.init)."""
    sink: Any = get_sink()
    if not hasattr(sink, "put_file"):
        raise HeddleError("File, Dir and DataFrame need a BlobStore session: call heddle.init()")
    return sink


def _digest(key: str) -> str:
    return key.partition(":")[2]


# -- File ---------------------------------------------------------------------------


class File:
    """A file: local until it crosses a task boundary, then a blob in the object store.

    ``File.from_local(path)`` wraps a local file; ``File.new_remote()`` gives a file to
    write straight into the store with ``open("wb")``. A file received by a task is
    streamed with ``open()`` or fetched once with ``download()``.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        name: str | None = None,
        size: int | None = None,
        local: str | os.PathLike[str] | None = None,
    ) -> None:
        self._key = key
        self._local = Path(local) if local is not None else None
        self.name = name or (self._local.name if self._local is not None else "file")
        self._size = size

    @classmethod
    def from_local(cls, path: str | os.PathLike[str]) -> File:
        p = Path(path)
        if not p.is_file():
            raise StorageError(f"File.from_local: {p} is not a file")
        return cls(local=p.resolve(), name=p.name)

    @classmethod
    def new_remote(cls, name: str | None = None) -> File:
        """An empty file in the object store: write it with ``open("wb")``."""
        return cls(name=name or "file")

    @property
    def key(self) -> str | None:
        """The blob key, once the file is in the store."""
        return self._key

    @property
    def path(self) -> str:
        """The local path if the file is local, else its blob key."""
        if self._local is not None:
            return str(self._local)
        return self._key or f"<unwritten {self.name}>"

    @property
    def size(self) -> int:
        if self._size is None:
            if self._local is not None:
                self._size = self._local.stat().st_size
            elif self._key is not None:
                self._size = int(_blobs().size(self._key))
            else:
                return 0
        return self._size

    def upload(self) -> File:
        """Put the file in the object store (once; a no-op when it is there already)."""
        if self._key is None:
            if self._local is None:
                raise StorageError(f"file {self.name!r} was never written: use open('wb')")
            [(key, size)] = _upload_local([self._local], f"File {self.name!r}")
            self._key, self._size = key, size
        return self

    def open(self, mode: str = "rb", encoding: str | None = None) -> Any:
        """Stream the file: "rb"/"r" read (verified at the end), "wb"/"w" write into
        the store (a new remote file only)."""
        if mode in ("rb", "r"):
            raw: BinaryIO
            if self._local is not None and self._key is None:
                raw = self._local.open("rb")
            elif self._key is not None:
                raw = typing.cast(BinaryIO, io.BufferedReader(_blobs().open(self._key)))
            else:
                raise StorageError(f"file {self.name!r} was never written: use open('wb')")
            return raw if mode == "rb" else io.TextIOWrapper(raw, encoding=encoding or "utf-8")
        if mode in ("wb", "w"):
            if self._key is not None or self._local is not None:
                raise StorageError(f"file {self.name!r} already has content; files are immutable")
            writer = _FileWriter(self, _blobs().writer())
            return (
                writer if mode == "wb" else io.TextIOWrapper(writer, encoding=encoding or "utf-8")
            )
        raise ValueError(f"unsupported mode {mode!r}: use 'rb', 'r', 'wb' or 'w'")

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            return bytes(f.read())

    def download(self, path: str | os.PathLike[str] | None = None) -> Path:
        """A local copy: ``path`` if given, else a cached copy under the Heddle home
        (downloaded once per machine and verified)."""
        if self._local is not None and self._key is None:
            if path is None:
                return self._local
            return _copy_local(self._local, Path(path))
        if self._key is None:
            raise StorageError(f"file {self.name!r} was never written: use open('wb')")
        blobs = _blobs()
        target = (
            Path(path)
            if path is not None
            else Path(blobs.cache_dir) / "files" / _digest(self._key) / self.name
        )
        if path is None and target.is_file():
            return target
        return Path(blobs.download(self._key, target))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, File):
            return NotImplemented
        if self._key is not None and other._key is not None:
            return self._key == other._key and self.name == other.name
        return self is other

    def __hash__(self) -> int:
        return hash((self._key, self.name)) if self._key is not None else id(self)

    def __repr__(self) -> str:
        where = self._key[:19] if self._key else str(self._local)
        return f"File({self.name!r}, {where})"


class _FileWriter(io.RawIOBase):
    """The stream File.open("wb") returns: closing it sets the file's key."""

    def __init__(self, file: File, writer: Any) -> None:
        super().__init__()
        self._file = file
        self._writer = writer

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return int(self._writer.write(data))

    def close(self) -> None:
        if not self.closed:
            self._writer.close()
            self._file._key = self._writer.key
            self._file._size = self._writer.size
        super().close()

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            self._writer.abort()
            super().close()
        else:
            self.close()


def _vanished(what: str, path: Path) -> StorageError:
    return StorageError(
        f"{what}: {path} no longer exists; a local path must stay until it is uploaded "
        "(when it crosses a task boundary) - call .upload() before removing it"
    )


def _upload_local(paths: Sequence[Path], what: str) -> list[tuple[str, int]]:
    """Upload local files in parallel: (key, size) per path, sizes as uploaded.

    A file that is missing, unreadable or changed while it was read is an error naming
    it: a reference must never point at other bytes than the ones the task saw.
    """
    stats = []
    for p in paths:
        try:
            stats.append(p.stat())
        except FileNotFoundError:
            raise _vanished(what, p) from None
        except OSError as exc:
            raise StorageError(f"{what}: cannot read {p}: {exc}") from exc
    try:
        keys = _blobs().put_files(paths)
    except OSError as exc:  # a file removed between its stat and its read
        raise StorageError(f"{what}: cannot read {exc.filename or ''}: {exc}") from exc
    for p, before in zip(paths, stats, strict=True):
        try:
            after = p.stat()
        except FileNotFoundError:
            continue  # removed once read: the bytes stored are the ones it had
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise StorageError(f"{what}: {p} changed while it was being uploaded")
    return [(str(k), st.st_size) for k, st in zip(keys, stats, strict=True)]


def _copy_local(src: Path, dest: Path) -> Path:
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


# -- Dir ----------------------------------------------------------------------------


class _Manifest(msgspec.Struct, array_like=True):
    files: list[tuple[str, str, int]]  # (relative posix path, key, size), sorted


class Dir:
    """A directory tree: uploaded file by file in parallel, listed by a manifest blob.

    ``Dir.from_local(path)`` wraps a local folder; a received Dir lists its files with
    ``walk()`` and fetches them (in parallel) with ``download()``.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        name: str | None = None,
        local: str | os.PathLike[str] | None = None,
    ) -> None:
        self._key = key
        self._local = Path(local) if local is not None else None
        self.name = name or (self._local.name if self._local is not None else "dir")
        self._manifest: _Manifest | None = None

    @classmethod
    def from_local(cls, path: str | os.PathLike[str]) -> Dir:
        p = Path(path)
        if not p.is_dir():
            raise StorageError(f"Dir.from_local: {p} is not a directory")
        return cls(local=p.resolve(), name=p.name)

    @property
    def key(self) -> str | None:
        return self._key

    @property
    def path(self) -> str:
        if self._local is not None:
            return str(self._local)
        return self._key or "<empty dir>"

    def _local_files(self) -> list[tuple[str, Path]]:
        """The folder's files, sorted; an error (never an empty or partial list) when the
        folder, or a folder inside it, vanished or cannot be listed."""
        assert self._local is not None
        root_dir = self._local
        what = f"Dir {self.name!r}"
        if not root_dir.is_dir():
            raise _vanished(what, root_dir)

        def refuse(exc: OSError) -> None:
            # os.walk skips what it cannot list unless told otherwise.
            raise StorageError(f"{what}: cannot list {exc.filename or root_dir}: {exc}") from exc

        found = []
        for root, dirs, files in os.walk(root_dir, onerror=refuse):
            dirs.sort()
            for f in sorted(files):
                full = Path(root) / f
                found.append((full.relative_to(root_dir).as_posix(), full))
        return found

    def upload(self) -> Dir:
        """Upload every file (in parallel) and the manifest; once."""
        if self._key is None:
            if self._local is None:
                raise StorageError(f"dir {self.name!r} has no content")
            local = self._local_files()
            uploaded = _upload_local([p for _, p in local], f"Dir {self.name!r}")
            manifest = _Manifest(
                [(rel, key, size) for (rel, _), (key, size) in zip(local, uploaded, strict=True)]
            )
            self._key = str(_blobs().put(msgspec.msgpack.encode(manifest)))
            self._manifest = manifest
        return self

    def _entries(self) -> list[tuple[str, str, int]]:
        if self._manifest is None:
            assert self._key is not None
            data = _blobs().get(self._key)
            self._manifest = msgspec.msgpack.decode(data, type=_Manifest)
        return self._manifest.files

    def walk(self) -> Iterator[File]:
        """Every file, depth first in sorted order; ``File.name`` is its relative path."""
        if self._key is None and self._local is not None:
            for rel, p in self._local_files():
                yield File(local=p, name=rel)
            return
        for rel, key, size in self._entries():
            yield File(key=key, name=rel, size=size)

    def __len__(self) -> int:
        return sum(1 for _ in self.walk())

    def download(self, path: str | os.PathLike[str] | None = None) -> Path:
        """A local copy of the tree (files fetched in parallel): ``path`` if given, else
        a cached copy under the Heddle home."""
        if self._key is None:
            if self._local is None:
                raise StorageError(f"dir {self.name!r} has no content")
            if path is None:
                return self._local
            import shutil

            shutil.copytree(self._local, Path(path), dirs_exist_ok=True)
            return Path(path)
        blobs = _blobs()
        target = (
            Path(path)
            if path is not None
            else Path(blobs.cache_dir) / "dirs" / _digest(self._key) / self.name
        )
        done = target.parent / f".{target.name}.complete"
        if path is None and done.exists():
            return target
        pairs = [(key, target / rel) for rel, key, _ in self._entries()]
        blobs.download_many(pairs)
        target.mkdir(parents=True, exist_ok=True)
        if path is None:
            done.touch()
        return target

    def __repr__(self) -> str:
        where = self._key[:19] if self._key else str(self._local)
        return f"Dir({self.name!r}, {where})"


# -- DataFrame ----------------------------------------------------------------------


class DataFrame:
    """A lazy handle to a stored table (one or more Parquet parts).

    Build one with ``DataFrame.from_df(frame)``, ``DataFrame.from_parts(frames)`` or
    ``DataFrame.from_local(path)``; read it with
    ``df.open(pd.DataFrame, columns=[...]).all()`` or ``.iter()``. Passing the handle
    to another task does not read the data.
    """

    def __init__(
        self,
        *,
        parts: Sequence[str] = (),
        rows: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self._parts = tuple(parts)
        self._rows = rows
        self._columns = list(columns) if columns is not None else None
        self._pending: list[Any] = []

    @classmethod
    def from_df(cls, frame: Any) -> DataFrame:
        """A handle to a pandas/polars frame or pyarrow table, stored when it crosses a
        task boundary (or on ``upload()``)."""
        return cls.from_parts([frame])

    @classmethod
    def from_parts(cls, frames: Iterable[Any]) -> DataFrame:
        """A partitioned table: one Parquet part per frame, all with the same columns."""
        handle = cls()
        handle._pending = list(frames)
        return handle

    @classmethod
    def from_local(cls, path: str | os.PathLike[str]) -> DataFrame:
        """Parquet file(s) on disk: a file, or a folder whose ``*.parquet`` files are the
        parts (uploaded as they are, in parallel)."""
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

        p = Path(path)
        files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        if not files:
            raise StorageError(f"DataFrame.from_local: no .parquet files under {p}")
        keys = _blobs().put_files(files)
        rows = 0
        columns: list[str] | None = None
        for f in files:
            meta = pq.read_metadata(f)
            rows += meta.num_rows
            columns = columns or list(meta.schema.to_arrow_schema().names)
        return cls(parts=keys, rows=rows, columns=columns)

    @property
    def parts(self) -> tuple[str, ...]:
        return self.upload()._parts

    @property
    def num_rows(self) -> int:
        self.upload()
        return self._rows or 0

    @property
    def columns(self) -> list[str]:
        self.upload()
        return list(self._columns or [])

    def upload(self) -> DataFrame:
        if self._pending:
            from heddle._types.tables import stored_frame

            parts, rows, columns = [], 0, None
            for frame in self._pending:
                key, n, names = stored_frame(frame)
                parts.append(key)
                rows += n
                columns = columns or [c for c in names if not c.startswith("__")]
            self._parts = (*self._parts, *parts)
            self._rows = (self._rows or 0) + rows
            self._columns = self._columns or columns
            self._pending = []
        return self

    def open(self, as_type: Any = None, columns: Sequence[str] | None = None) -> DataFrameReader:
        """A reader producing ``as_type`` (pd.DataFrame, pl.DataFrame, pa.Table; default
        pa.Table), reading only ``columns`` from the Parquet parts."""
        return DataFrameReader(self.upload(), as_type, list(columns) if columns else None)

    def __repr__(self) -> str:
        return f"DataFrame(parts={len(self._parts)}, rows={self._rows}, columns={self._columns})"


class DataFrameReader:
    """Reads a stored DataFrame as one frame (``all``) or batch by batch (``iter``)."""

    def __init__(self, handle: DataFrame, as_type: Any, columns: list[str] | None) -> None:
        self._handle = handle
        self._as = as_type
        self._columns = columns

    def all(self) -> Any:
        from heddle._types.tables import concat_parts, convert_arrow

        return convert_arrow(concat_parts(self._handle._parts, self._columns), self._as)

    def iter(self, batch_rows: int = 65_536) -> Iterator[Any]:
        import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

        from heddle._types.blobio import local_path
        from heddle._types.tables import convert_arrow

        for key in self._handle._parts:
            pf = pq.ParquetFile(local_path(key), memory_map=True)
            for batch in pf.iter_batches(batch_size=batch_rows, columns=self._columns):
                yield convert_arrow(pa.Table.from_batches([batch]), self._as)


# -- codecs ---------------------------------------------------------------------------


class _RefCodec(Codec):
    cls: type

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (self.cls,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self.cls):
            raise self.mismatch(value, path)
        try:
            return self.plain_of(value)
        except StorageError as exc:
            raise TypeMismatchError(
                self.cls.__name__, f"one that cannot be stored ({exc})", path
            ) from exc

    def plain_of(self, value: Any) -> Any:
        raise NotImplementedError


class FileCodec(_RefCodec):
    """{"t": "file", "k": key, "name": name, "size": n}."""

    cls = File

    def plain_of(self, value: File) -> Any:
        value.upload()
        return {"t": "file", "k": value.key, "name": value.name, "size": value.size}

    def from_plain(self, plain: Any) -> Any:
        return File(key=plain["k"], name=plain["name"], size=plain["size"])


class DirCodec(_RefCodec):
    """{"t": "dir", "k": manifest key, "name": name}."""

    cls = Dir

    def plain_of(self, value: Dir) -> Any:
        value.upload()
        return {"t": "dir", "k": value.key, "name": value.name}

    def from_plain(self, plain: Any) -> Any:
        return Dir(key=plain["k"], name=plain["name"])


class DataFrameCodec(_RefCodec):
    """{"t": "dataframe", "parts": [keys], "rows": n, "cols": [...]}: never reads data.

    A pandas/polars/arrow frame is accepted too and stored as a one-part handle, as
    Flyte 2 converts them: the task receives the handle it declared.
    """

    cls = DataFrame

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, DataFrame) and _is_frame(value):
            value = DataFrame.from_df(value)
        return super().to_plain(value, path)

    def plain_of(self, value: DataFrame) -> Any:
        value.upload()
        return {
            "t": "dataframe",
            "parts": list(value._parts),
            "rows": value._rows,
            "cols": value._columns,
        }

    def from_plain(self, plain: Any) -> Any:
        return DataFrame(parts=plain["parts"], rows=plain["rows"], columns=plain["cols"])


def _is_subclass(base: type) -> Any:
    return lambda h: isinstance(h, type) and issubclass(h, base)


def _is_frame(value: Any) -> bool:
    # By module and class name first, so a wrong value never imports pyarrow.
    if not is_table_hint(type(value)):
        return False
    from heddle._types.tables import FRAME_KINDS, table_kind

    return table_kind(type(value)) in FRAME_KINDS


def _stored_parts(handle: DataFrame) -> TableParts:
    handle.upload()
    return handle._parts, handle._rows, handle._columns


register(_is_subclass(File), FileCodec)
register(_is_subclass(Dir), DirCodec)
register(_is_subclass(DataFrame), DataFrameCodec)
register_table_handle(DataFrame, _stored_parts)
