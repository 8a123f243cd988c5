"""Content-addressed blobs in an object store (local folder, S3, GCS, Azure).

Owns every byte that Heddle keeps outside the database. Blobs are addressed by the
SHA-256 of their content, hashed while they are written, and verified on read. A blob
found corrupt is moved aside (under ``corrupt/``), so that it reads as missing from
then on and whoever produced it can write it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import obstore

from heddle._errors import BlobCorruptError, BlobMissingError, StorageError
from heddle._storage.io import (
    CHUNK,
    BlobWriter,
    VerifyingReader,
    hash_file,
    hash_open_file,
    io_pool,
    open_store,
    parallel,
    run_quietly,
)

T = TypeVar("T")

_BLOB_PREFIX = "blobs"
_CORRUPT_PREFIX = "corrupt"  # where blobs whose bytes went bad are kept, for a post-mortem
SMALL = 4 * 2**20  # files up to this size are read whole and put in one request
# Local blobs up to this size are hashed when recorded outputs are checked (check()).
CHECK_HASH_BYTES = 64 * 2**20


def blob_key(data: bytes) -> str:
    """The content address of ``data``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _key_to_path(key: str) -> str:
    algo, _, digest = key.partition(":")
    if algo != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise StorageError(f"not a blob key: {key!r}")
    return f"{_BLOB_PREFIX}/{digest[:2]}/{digest[2:]}"


def _default_cache_dir(url: str, root: Path | None) -> Path:
    if root is not None:
        return root.parent / "cache"
    home = os.environ.get("HEDDLE_HOME")
    base = Path(home) if home else Path.cwd() / ".heddle"
    tag = hashlib.blake2b(url.encode(), digest_size=6).hexdigest()
    return base.resolve() / "cache" / tag


class BlobStore:
    """Puts and gets immutable blobs by content hash.

    Writes skip the upload when the blob is already present (content addressing makes
    that safe); reads re-hash and refuse bytes that do not match their key. Blobs of a
    remote store are read through a verified local cache, so a blob is downloaded once
    per machine and formats that need random access (Parquet) read a local file.

    A local file is re-hashed when it changed since this process last verified it (its
    size, times or inode differ); ``open_verified`` re-hashes every time, for reads that
    hand the bytes to a person (downloads).
    """

    def __init__(
        self, url: str, cache_dir: str | os.PathLike[str] | None = None, *, create: bool = True
    ) -> None:
        self.url = url
        # create=False (a reader): a local folder that is not there is not made.
        self._opened, self.root = open_store(url, create=create)
        self._known: set[str] = set()
        self.cache_dir = (
            Path(cache_dir) if cache_dir is not None else _default_cache_dir(url, self.root)
        )
        # Local files (blobs, or cached copies of remote ones) hashed in this process,
        # with the stat stamp they had then: any write through the file system changes it.
        self._verified: dict[str, _Stamp] = {}
        # Local files uploaded by put_file, so an unchanged 1 GB input is hashed once.
        self._uploaded: dict[tuple[str, int, int, int], str] = {}

    @property
    def _store(self) -> Any:
        if self._opened is None:
            assert self.root is not None
            if not self.root.is_dir():
                # Nothing was ever stored here: every blob is missing.
                raise FileNotFoundError(f"no storage folder {self.root}")
            self._opened, _root = open_store(self.url)
        return self._opened

    @property
    def is_local(self) -> bool:
        return self.root is not None

    # -- whole values ----------------------------------------------------------------

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        if self._remembered(key, len(data)):
            return key
        path = _key_to_path(key)
        try:
            obstore.put(self._store, path, data)
        except Exception as exc:
            raise StorageError(f"cannot write blob {key} to {self.url}: {exc}") from exc
        self._known.add(key)
        return key

    async def put_async(self, data: bytes) -> str:
        key = blob_key(data)
        if await asyncio.to_thread(self._remembered, key, len(data)):
            return key
        try:
            await obstore.put_async(self._store, _key_to_path(key), data)
        except Exception as exc:
            raise StorageError(f"cannot write blob {key} to {self.url}: {exc}") from exc
        self._known.add(key)
        return key

    def get(self, key: str) -> bytes:
        data = self._get_bytes(key)
        actual = blob_key(data)
        if actual != key:
            if self.root is None:
                # Once more before judging: a bad transfer is not a bad blob.
                data = self._get_bytes(key)
                if blob_key(data) == key:
                    return data
            self._set_aside(key, confirmed=self.root is None)
            raise BlobCorruptError(key, actual)
        return data

    def _get_bytes(self, key: str) -> bytes:
        try:
            return bytes(obstore.get(self._store, _key_to_path(key)).bytes())
        except FileNotFoundError as exc:
            raise BlobMissingError(key, self.url) from exc
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read blob {key} from {self.url}: {exc}") from exc

    async def get_async(self, key: str) -> bytes:
        return await asyncio.to_thread(self.get, key)

    def put_text(self, path: str, data: bytes) -> None:
        """Write a named (not content-addressed) object, e.g. a log file."""
        try:
            obstore.put(self._store, path, data)
        except Exception as exc:
            raise StorageError(f"cannot write {path} to {self.url}: {exc}") from exc

    def get_text(self, path: str) -> bytes | None:
        try:
            return bytes(obstore.get(self._store, path).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StorageError(f"cannot read {path} from {self.url}: {exc}") from exc

    def put_many(self, datas: Sequence[bytes]) -> list[str]:
        """Put many small blobs at once (in parallel)."""
        return parallel(self.put, datas)

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """Get (and verify) many blobs at once (in parallel)."""
        return parallel(self.get, keys)

    # -- streaming writes --------------------------------------------------------------

    def writer(self) -> BlobWriter:
        """A binary file to write one blob into; its key is known once it is closed.

        Bytes are hashed as they are written and land in a temporary object that is
        renamed to its content address on close (local: a file rename; remote: a
        multipart upload, then a server-side copy unless the blob already exists). A
        remote blob is also written to the local cache, so reading it back is local.
        """
        tmp = f"tmp/{uuid.uuid4().hex}"
        if self.root is not None:
            return BlobWriter(self, local_tmp=self.root / tmp)
        cache_tmp = self.cache_dir / tmp
        return BlobWriter(self, remote_tmp=tmp, cache_tmp=cache_tmp)

    def put_stream(self, chunks: Iterable[bytes | memoryview]) -> str:
        """Write a blob from an iterator of byte chunks; returns its key."""
        with self.writer() as w:
            for chunk in chunks:
                w.write(chunk)
        return w.key

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Upload a local file as a blob, hashing it while it is copied (one pass).

        The key is remembered per (path, size, mtime, inode), so uploading the same
        unchanged file again costs a stat call, not a re-hash.
        """
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise StorageError(f"cannot read {p}: {exc}") from exc
        memo = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        known = self._uploaded.get(memo)
        if known is not None and self._in_place(known, st.st_size):
            return known
        if st.st_size <= SMALL:
            # One read, one request: the key is known before the upload starts.
            key = self.put(p.read_bytes())
            self._uploaded[memo] = key
            return key
        with p.open("rb") as f:
            if self.root is not None:
                with self.writer() as w:
                    _copy_into(f, w)
            else:
                w = self.writer()
                w.skip_cache = True  # the source is local already
                with w:
                    _copy_into(f, w)
        self._uploaded[memo] = w.key
        return w.key

    def put_files(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Upload many local files in parallel; keys in the order of ``paths``."""
        return parallel(self.put_file, paths)

    # -- verified reads ----------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """Whether the blob is in the store now (asked, not remembered: another process
        may have set it aside)."""
        path = _key_to_path(key)
        if self.root is not None:
            return (self.root / path).is_file()
        try:
            obstore.head(self._store, path)
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc

    def size(self, key: str) -> int:
        path = _key_to_path(key)
        try:
            if self.root is not None:
                return (self.root / path).stat().st_size
            return int(obstore.head(self._store, path)["size"])
        except FileNotFoundError as exc:
            raise BlobMissingError(key, self.url) from exc
        except OSError as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc
        except Exception as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc

    def check(self, key: str, size: int | None = None) -> None:
        """Raise BlobMissingError or BlobCorruptError unless the blob is in place, of
        ``size`` bytes if given, and — where that is cheap: a local file up to
        CHECK_HASH_BYTES, a remote blob up to SMALL (then kept in the cache) — unless
        its bytes hash to its key. For checking recorded outputs before they are
        replayed: existence and size catch lost and truncated blobs, the hash the rest.
        """
        try:
            actual_size = self.size(key)
        except BlobMissingError:
            self._forget(key)
            raise
        if size is not None and actual_size != size:
            self._set_aside(key)
            raise BlobCorruptError(key, f"<{actual_size} bytes, not {size}>")
        if self.root is not None:
            if actual_size <= CHECK_HASH_BYTES:
                self._verify_local(key, self.root / _key_to_path(key))
        elif actual_size <= SMALL:
            self._cached(key)

    def open(self, key: str) -> VerifyingReader:
        """Stream a blob; reading it to the end verifies it (BlobCorruptError at EOF)."""
        path = _key_to_path(key)
        on_corrupt: Callable[[], object] = lambda: self._set_aside(key)  # noqa: E731
        try:
            if self.root is not None:
                raw: Any = (self.root / path).open("rb")
            else:
                cached = self.cache_dir / path
                if cached.is_file():
                    raw = cached.open("rb")
                    # A bad copy of a blob that may be fine: drop it, fetch it next time.
                    on_corrupt = lambda: self._drop_cached(key)  # noqa: E731
                else:
                    raw = obstore.open_reader(self._store, path, buffer_size=CHUNK)
        except FileNotFoundError as exc:
            raise BlobMissingError(key, self.url) from exc
        except Exception as exc:
            raise StorageError(f"cannot read blob {key} from {self.url}: {exc}") from exc
        return VerifyingReader(raw, key, on_corrupt=on_corrupt)

    def open_verified(self, key: str) -> VerifyingReader:
        """Stream a blob whose bytes were all hashed before the first one is returned
        (for downloads: a person gets the right bytes or an error, never bad bytes).

        The stream checks the hash once more as it is read; ``size`` is its length.
        """
        if self.root is None:
            path = self._cached(key, recheck=True)
        else:
            path = self.root / _key_to_path(key)
        try:
            f = path.open("rb")
        except FileNotFoundError as exc:
            raise BlobMissingError(key, self.url) from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {key} from {self.url}: {exc}") from exc
        try:
            actual = hash_open_file(f)
            if actual != key:
                # Only a local blob can be wrong here (a cached copy was just checked).
                self._set_aside(key)
                raise BlobCorruptError(key, actual)
            f.seek(0)
        except BaseException:
            f.close()
            raise
        return VerifyingReader(
            f, key, size=os.fstat(f.fileno()).st_size, on_corrupt=lambda: self._set_aside(key)
        )

    def local_file(self, key: str) -> Path:
        """A local path holding the verified bytes of a blob (do not modify it).

        Local store: the blob itself, re-hashed once per process unless it changed.
        Remote store: the cached copy, downloaded (and hashed while written) if absent.
        """
        if self.root is not None:
            path = self.root / _key_to_path(key)
            self._verify_local(key, path)
            return path
        return self._cached(key)

    def read_file(self, key: str, parse: Callable[[Path], T]) -> T:
        """``parse(path)`` on a verified local copy of a blob.

        For the local store the hash is checked in a worker thread while ``parse`` runs,
        and the result is dropped (BlobCorruptError) if the bytes do not match.
        """
        if self.root is None:
            return parse(self._cached(key))
        path = self.root / _key_to_path(key)
        stamp = _stamp(path, key, self.url)
        if self._verified.get(key) == stamp:
            return parse(path)
        check: Future[str] = io_pool().submit(hash_file, path)
        try:
            result = parse(path)
        except Exception as exc:
            # Bad bytes often break the parser first: report the corruption, not that.
            actual = check.result()
            if actual != key:
                self._set_aside(key)
                raise BlobCorruptError(key, actual) from exc
            raise
        actual = check.result()
        if actual != key:
            self._set_aside(key)
            raise BlobCorruptError(key, actual)
        self._verified[key] = stamp
        return result

    def download(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Copy a blob to ``dest`` (a new file), verified.

        A remote blob not in the cache streams straight to ``dest`` (one request, hashed
        while written) rather than through the cache.
        """
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        if self.root is None and not (self.cache_dir / _key_to_path(key)).is_file():
            self._fetch(key, tmp)
            os.replace(tmp, target)
            return target
        src = self.local_file(key)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write {target}: {exc}") from exc
        return target

    def download_many(self, pairs: Sequence[tuple[str, str | os.PathLike[str]]]) -> list[Path]:
        """Download many blobs in parallel: ``[(key, dest), ...]``."""
        return parallel(lambda kd: self.download(kd[0], kd[1]), pairs)

    # -- internals -----------------------------------------------------------------

    def _verify_local(self, key: str, path: Path) -> None:
        stamp = _stamp(path, key, self.url)
        if self._verified.get(key) == stamp:
            return
        actual = hash_file(path)
        if actual != key:
            self._set_aside(key)
            raise BlobCorruptError(key, actual)
        self._verified[key] = stamp

    def _cached(self, key: str, recheck: bool = False) -> Path:
        """The verified local copy of a remote blob, fetched if absent or bad.

        A copy is re-hashed when it changed since it was verified (or always, with
        ``recheck``); a bad copy is fetched again, since the blob itself may be fine.
        """
        path = self.cache_dir / _key_to_path(key)
        if path.is_file():
            try:
                stamp = _stamp(path, key, self.url)
                if not recheck and self._verified.get(key) == stamp:
                    return path
                if hash_file(path) == key:
                    self._verified[key] = stamp
                    return path
            except (StorageError, OSError):
                pass  # gone meanwhile: fetch it
            self._drop_cached(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.part")
        self._fetch(key, tmp)
        os.replace(tmp, path)
        self._verified[key] = _stamp(path, key, self.url)  # hashed while it was fetched
        return path

    def _fetch(self, key: str, dest: Path) -> None:
        """Stream a remote blob into ``dest`` with one GET, hashing it on the way.

        Bytes that do not match are fetched once more before the blob is judged corrupt
        (and set aside): a bad transfer is not a bad blob."""
        actual = self._fetch_once(key, dest)
        if actual != key:
            actual = self._fetch_once(key, dest)
        if actual != key:
            dest.unlink(missing_ok=True)
            self._set_aside(key, confirmed=True)
            raise BlobCorruptError(key, actual)

    def _fetch_once(self, key: str, dest: Path) -> str:
        h = hashlib.sha256()
        try:
            result = obstore.get(self._store, _key_to_path(key))
            with dest.open("wb") as out:
                for chunk in result.stream(min_chunk_size=CHUNK):
                    h.update(chunk)
                    out.write(chunk)
        except FileNotFoundError as exc:
            dest.unlink(missing_ok=True)
            raise BlobMissingError(key, self.url) from exc
        except Exception as exc:
            dest.unlink(missing_ok=True)
            raise StorageError(f"cannot read blob {key} from {self.url}: {exc}") from exc
        return "sha256:" + h.hexdigest()

    def _remembered(self, key: str, size: int) -> bool:
        """Whether a blob this process wrote or read is still in place, so a put can skip
        it. Checked (a stat, or a HEAD request without a body), not trusted: another
        process may have set it aside, and the put is what makes it again."""
        if key not in self._known:
            return False
        if self._in_place(key, size):
            return True
        self._known.discard(key)
        return False

    def _in_place(self, key: str, size: int) -> bool:
        path = _key_to_path(key)
        try:
            if self.root is not None:
                return (self.root / path).stat().st_size == size
            return int(obstore.head(self._store, path)["size"]) == size
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise StorageError(f"cannot reach {self.url}: {exc}") from exc

    def _forget(self, key: str) -> None:
        self._known.discard(key)
        self._verified.pop(key, None)
        for memo in [m for m, k in self._uploaded.items() if k == key]:
            del self._uploaded[memo]

    def _drop_cached(self, key: str) -> None:
        self._verified.pop(key, None)
        if self.root is None:
            (self.cache_dir / _key_to_path(key)).unlink(missing_ok=True)

    def _set_aside(self, key: str, confirmed: bool = False) -> None:
        """Move a corrupt blob to ``corrupt/`` so that it reads as missing from now on
        and a producer can write it again. Best effort. Unless the caller ``confirmed``
        it (read it twice), the blob is hashed once more first, so a blob that was just
        written again whole is left alone."""
        self._forget(key)
        path = _key_to_path(key)
        aside = f"{_CORRUPT_PREFIX}/{key.partition(':')[2]}.{uuid.uuid4().hex[:8]}"
        if self.root is not None:
            source = self.root / path
            with contextlib.suppress(OSError):
                if confirmed or hash_file(source) != key:
                    (self.root / _CORRUPT_PREFIX).mkdir(parents=True, exist_ok=True)
                    os.replace(source, self.root / aside)
            return
        self._drop_cached(key)
        with contextlib.suppress(Exception):
            if confirmed or self._remote_hash(path) != key:
                obstore.rename(self._store, path, aside)

    def _remote_hash(self, path: str) -> str:
        h = hashlib.sha256()
        for chunk in obstore.get(self._store, path).stream(min_chunk_size=CHUNK):
            h.update(chunk)
        return "sha256:" + h.hexdigest()

    # Used by BlobWriter when it finishes. A blob already in place is kept (content
    # addressing), unless its size shows it is not what was just written.
    def _finish_local(self, tmp: Path, key: str, size: int) -> None:
        dest = self.root / _key_to_path(key) if self.root is not None else tmp
        if _size_of(dest) == size:
            tmp.unlink(missing_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        self._known.add(key)

    def _finish_remote(self, tmp: str, key: str, size: int, cache_tmp: Path | None) -> None:
        final = _key_to_path(key)
        try:
            try:
                present = int(obstore.head(self._store, final)["size"]) == size
            except FileNotFoundError:
                present = False
            if present:
                obstore.delete(self._store, tmp)
            else:
                obstore.rename(self._store, tmp, final)
        except Exception as exc:
            run_quietly(lambda: obstore.delete(self._store, tmp))
            raise StorageError(f"cannot write blob {key} to {self.url}: {exc}") from exc
        self._known.add(key)
        if cache_tmp is not None:
            dest = self.cache_dir / final
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(cache_tmp, dest)

    def _abort_remote(self, tmp: str) -> None:
        run_quietly(lambda: obstore.delete(self._store, tmp))

    def _open_remote_writer(self, tmp: str) -> Any:
        return obstore.open_writer(self._store, tmp, buffer_size=CHUNK, max_concurrency=8)


_Stamp = tuple[int, int, int, int]


def _stamp(path: Path, key: str, url: str) -> _Stamp:
    """What changes whenever a file is written, renamed over or touched: size, mtime,
    ctime (which no user-level call can set back) and inode."""
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise BlobMissingError(key, url) from exc
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _copy_into(src: Any, w: BlobWriter) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)
        if not n:
            return
        w.write(view[:n])
