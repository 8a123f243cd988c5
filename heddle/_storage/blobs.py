"""Content-addressed blobs in an object store (local folder, S3, GCS, Azure).

Owns every byte that Heddle keeps outside the database. Blobs are addressed by the
SHA-256 of their content, written once, and verified on read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import obstore
from obstore.store import LocalStore, from_url

from heddle._errors import BlobCorruptError, ConfigError, StorageError

_BLOB_PREFIX = "blobs"


def blob_key(data: bytes) -> str:
    """The content address of ``data``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _key_to_path(key: str) -> str:
    algo, _, digest = key.partition(":")
    if algo != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise StorageError(f"not a blob key: {key!r}")
    return f"{_BLOB_PREFIX}/{digest[:2]}/{digest[2:]}"


def _open_store(url: str) -> Any:
    if "://" not in url:
        path = Path(url).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(str(path))
    if url.startswith("file://"):
        path = Path(url[len("file://") :]).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return LocalStore(str(path))
    try:
        return from_url(url)
    except Exception as exc:
        raise ConfigError(f"cannot open object store {url!r}: {exc}") from exc


class BlobStore:
    """Puts and gets immutable blobs by content hash.

    Writes skip the upload when the blob is already present (content addressing makes
    that safe); reads re-hash and refuse bytes that do not match their key.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._store = _open_store(url)
        self._known: set[str] = set()

    def put(self, data: bytes) -> str:
        key = blob_key(data)
        if key in self._known:
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
        if key in self._known:
            return key
        try:
            await obstore.put_async(self._store, _key_to_path(key), data)
        except Exception as exc:
            raise StorageError(f"cannot write blob {key} to {self.url}: {exc}") from exc
        self._known.add(key)
        return key

    def get(self, key: str) -> bytes:
        try:
            data = bytes(obstore.get(self._store, _key_to_path(key)).bytes())
        except FileNotFoundError as exc:
            raise StorageError(f"blob {key} is missing from {self.url}") from exc
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"cannot read blob {key} from {self.url}: {exc}") from exc
        actual = blob_key(data)
        if actual != key:
            raise BlobCorruptError(key, actual)
        return data

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


def default_storage_url(home: str | os.PathLike[str]) -> str:
    return str(Path(home) / "blobs")
