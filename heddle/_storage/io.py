"""Streaming pieces of the blob store: opening a store by URL, the hashing writer,
the verifying reader, and the thread pool that runs transfers in parallel.

Credentials come from the usual environment variables, read by obstore itself:
AWS_* (incl. AWS_ENDPOINT_URL, AWS_ALLOW_HTTP), GOOGLE_*, AZURE_STORAGE_*.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from obstore.store import LocalStore, from_url

from heddle._errors import BlobCorruptError, ConfigError, StorageError

if TYPE_CHECKING:
    from heddle._storage.blobs import BlobStore

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 8 * 2**20  # read/write granularity, and the multipart part size
_WORKERS = 16

_pool: ThreadPoolExecutor | None = None
_lane_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """The process-wide pool for transfers and hashing (both release the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="heddle-io")
        return _pool


def lane_pool() -> ThreadPoolExecutor:
    """Where writers hash and forward their chunks; its jobs never wait on other jobs,
    so writers running on the I/O pool cannot deadlock it."""
    global _lane_pool
    with _pool_lock:
        if _lane_pool is None:
            _lane_pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="heddle-hash")
        return _lane_pool


def parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` on the I/O pool; the first error is raised."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    return list(io_pool().map(fn, items))


def run_quietly(fn: Callable[[], object]) -> None:
    """Best-effort cleanup: a failure here must not hide the error being handled."""
    with contextlib.suppress(Exception):
        fn()


def open_store(url: str, *, create: bool = True) -> tuple[Any, Path | None]:
    """The obstore store for a URL, and its root folder when it is local.

    Unless ``create``, a local folder that does not exist is not made: the store is
    then None (a reader opens it once the folder appears, see BlobStore).
    """
    if "://" not in url or url.startswith("file://"):
        raw = url[len("file://") :] if url.startswith("file://") else url
        path = Path(raw).expanduser().resolve()
        if not create and not path.is_dir():
            return None, path
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(str(path)), path
    try:
        return from_url(url), None
    except Exception as exc:
        raise ConfigError(f"cannot open object store {url!r}: {exc}") from exc


def hash_file(path: Path) -> str:
    """``sha256:<hex>`` of a file, through a memory map (no copy into Python)."""
    with path.open("rb") as f:
        return hash_open_file(f)


def hash_open_file(f: Any) -> str:
    """``sha256:<hex>`` of an open file's whole content (its position is left alone)."""
    if os.fstat(f.fileno()).st_size == 0:
        return "sha256:" + hashlib.sha256(b"").hexdigest()
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return "sha256:" + hashlib.sha256(m).hexdigest()


class BlobWriter(io.RawIOBase):
    """A write-only binary file that becomes one blob when closed.

    Every write updates the SHA-256 and goes to a temporary object; ``close`` moves it
    to its content address (see BlobStore.writer). Leaving a ``with`` block by an
    exception discards it. ``key`` is the blob's key once closed.
    """

    def __init__(
        self,
        blobs: BlobStore,
        *,
        local_tmp: Path | None = None,
        remote_tmp: str | None = None,
        cache_tmp: Path | None = None,
    ) -> None:
        super().__init__()
        self._blobs = blobs
        self._hash = hashlib.sha256()
        self._pos = 0
        self._key: str | None = None
        self._local_tmp = local_tmp
        self._remote_tmp = remote_tmp
        self._cache_tmp = cache_tmp
        self._file: Any = None
        self._remote: Any = None
        self._cache: Any = None
        self._done = False
        self._buf = bytearray()
        self._pending: Future[None] | None = None
        self.skip_cache = False
        if local_tmp is not None:
            local_tmp.parent.mkdir(parents=True, exist_ok=True)
            self._file = local_tmp.open("wb")

    @property
    def key(self) -> str:
        if self._key is None:
            raise StorageError("the blob's key is known only after the writer is closed")
        return self._key

    @property
    def size(self) -> int:
        return self._pos

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _open_remote(self) -> None:
        assert self._remote_tmp is not None
        self._remote = self._blobs._open_remote_writer(self._remote_tmp)
        if self._cache_tmp is not None and not self.skip_cache:
            self._cache_tmp.parent.mkdir(parents=True, exist_ok=True)
            self._cache = self._cache_tmp.open("wb")

    def write(self, data: Any) -> int:
        """Buffer ``data``; full chunks are hashed and sent on a worker thread while the
        caller produces the next one (the hash still covers every byte exactly once)."""
        if self._done:
            raise ValueError("write to a closed blob writer")
        n = data.nbytes if isinstance(data, memoryview) else len(data)
        if not n:
            return 0
        self._buf += data
        self._pos += n
        if len(self._buf) >= CHUNK:
            self._send()
        return n

    def _send(self) -> None:
        chunk, self._buf = self._buf, bytearray()
        self._wait()
        self._pending = lane_pool().submit(self._forward, chunk)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()
            except Exception as exc:
                self.abort()
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"cannot write a blob to {self._blobs.url}: {exc}") from exc

    def _forward(self, chunk: bytearray) -> None:
        self._hash.update(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        if self._remote is None:
            self._open_remote()
        self._remote.write(chunk)
        if self._cache is not None:
            self._cache.write(chunk)

    def close(self) -> None:
        """Finish the blob: after this, ``key`` names it."""
        if self._done:
            return
        if self._buf:
            self._send()
        self._wait()
        self._done = True
        key = "sha256:" + self._hash.hexdigest()
        try:
            if self._local_tmp is not None:
                self._file.close()
                self._blobs._finish_local(self._local_tmp, key, self._pos)
            else:
                assert self._remote_tmp is not None
                if self._remote is None:
                    self._open_remote()
                self._remote.close()
                if self._cache is not None:
                    self._cache.close()
                cache_tmp = self._cache_tmp if self._cache is not None else None
                self._blobs._finish_remote(self._remote_tmp, key, self._pos, cache_tmp)
        except StorageError:
            self._cleanup()
            raise
        except Exception as exc:
            self._cleanup()
            raise StorageError(f"cannot write blob {key} to {self._blobs.url}: {exc}") from exc
        finally:
            super().close()
        self._key = key

    def abort(self) -> None:
        """Discard what was written."""
        if self._done:
            return
        self._done = True
        pending, self._pending = self._pending, None
        if pending is not None:
            run_quietly(pending.result)
        self._cleanup()
        super().close()

    def _cleanup(self) -> None:
        if self._file is not None:
            run_quietly(self._file.close)
        if self._local_tmp is not None:
            self._local_tmp.unlink(missing_ok=True)
        if self._remote is not None:
            run_quietly(self._remote.close)
        if self._remote_tmp is not None and self._remote is not None:
            self._blobs._abort_remote(self._remote_tmp)
        if self._cache is not None:
            run_quietly(self._cache.close)
        if self._cache_tmp is not None:
            self._cache_tmp.unlink(missing_ok=True)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


class VerifyingReader(io.RawIOBase):
    """A read-only binary stream over a blob that checks its hash at the end.

    The last read (the one that returns no bytes) raises BlobCorruptError if the bytes
    read do not hash to the key, after calling ``on_corrupt`` (the store sets the blob
    aside); a stream abandoned half way is never verified. ``size`` is the blob's
    length when the store knew it up front.
    """

    def __init__(
        self,
        raw: Any,
        key: str,
        *,
        size: int | None = None,
        on_corrupt: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._key = key
        self._hash = hashlib.sha256()
        self._verified = False
        self.size = size
        self._on_corrupt = on_corrupt

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        if n == 0:
            self._check()
            return 0
        view[:n] = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self._hash.update(view[:n])
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        data = bytes(self._raw.read(size))
        if not data:
            self._check()
        else:
            self._hash.update(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while True:
            chunk = bytes(self._raw.read(CHUNK))
            if not chunk:
                break
            self._hash.update(chunk)
            parts.append(chunk)
        self._check()
        return b"".join(parts)

    def _check(self) -> None:
        if self._verified:
            return
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._key:
            if self._on_corrupt is not None:
                run_quietly(self._on_corrupt)
            raise BlobCorruptError(self._key, actual)
        self._verified = True

    def close(self) -> None:
        run_quietly(self._raw.close)
        super().close()
