"""Blobs whose bytes went bad are never handed out as good ones: the server's download
refuses them before sending a byte, reads in this process notice a change made after
they were verified, and a bad blob is set aside so that recovery can make it again.
On the local folder and on S3 (moto)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import obstore
import pytest

import heddle
from heddle._sdk.config import get_session
from heddle._storage import BlobStore
from heddle._storage.blobs import _key_to_path
from heddle.server import create_app
from heddle.server.testing import LiveServer


def blobs() -> BlobStore:
    return get_session().blobs


def flip_a_byte(store: BlobStore, key: str, at: int = 1000) -> None:
    """Bit rot: one byte changes, the size does not (and a local file keeps its mtime)."""
    path = _key_to_path(key)
    if store.root is not None:
        file = store.root / path
        st = file.stat()
        with file.open("r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0x01]))
        os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
        return
    data = bytearray(obstore.get(store._store, path).bytes())
    data[at] ^= 0x01
    obstore.put(store._store, path, bytes(data))


def set_aside(store: BlobStore) -> list[str]:
    return [o["path"] for o in obstore.list(store._store, prefix="corrupt").collect()]


@pytest.fixture
def server(any_storage: str) -> Iterator[LiveServer]:
    with LiveServer(create_app()) as s:
        yield s


def test_a_good_blob_downloads_whole(server: LiveServer) -> None:
    data = os.urandom(3 * 2**20 + 7)
    key = blobs().put_stream([data])
    res = httpx.get(f"{server.url}/api/v1/blobs/{key}", params={"name": "x.bin"})
    assert res.status_code == 200
    assert res.content == data
    assert res.headers["content-length"] == str(len(data))


@pytest.mark.parametrize("size", [50_000, 9 * 2**20])
def test_a_corrupt_blob_is_refused_by_the_download_not_sent(server: LiveServer, size: int) -> None:
    data = os.urandom(size)
    store = blobs()
    key = store.put_stream([data])
    if store.root is None:  # S3: the bad bytes are in the bucket, not in this cache
        (store.cache_dir / _key_to_path(key)).unlink(missing_ok=True)
    flip_a_byte(store, key)
    res = httpx.get(f"{server.url}/api/v1/blobs/{key}")
    assert res.status_code == 500
    assert key in res.json()["detail"] and "corrupt" in res.json()["detail"]
    # Set aside, so the next recovery sees it missing and makes it again.
    assert not store.exists(key)
    assert len(set_aside(store)) == 1
    assert httpx.get(f"{server.url}/api/v1/blobs/{key}").status_code == 404


def test_a_byte_flipped_after_verification_is_found_in_the_same_process(home: Path) -> None:
    store = blobs()
    data = os.urandom(2**20)
    key = store.put(data)
    assert store.local_file(key).read_bytes() == data  # verified, and remembered
    assert store.read_file(key, lambda p: p.read_bytes()) == data
    flip_a_byte(store, key)
    with pytest.raises(heddle.BlobCorruptError, match=key):
        store.local_file(key)
    assert not store.exists(key)


def test_a_corrupt_cached_copy_of_an_s3_blob_is_fetched_again(s3_home: str) -> None:
    store = blobs()
    data = os.urandom(2**20)
    key = store.put_stream([data])
    cached = store.local_file(key)
    assert cached.is_relative_to(store.cache_dir)
    with cached.open("r+b") as f:
        f.write(b"rot")
    # The bucket still has the good bytes: the cache heals, nothing is set aside.
    assert store.local_file(key).read_bytes() == data
    assert store.read_file(key, lambda p: p.read_bytes()) == data
    assert set_aside(store) == []


def test_a_corrupt_blob_is_refused_through_a_stream_and_set_aside(any_storage: str) -> None:
    store = blobs()
    key = store.put_stream([os.urandom(2**20)])
    if store.root is None:
        (store.cache_dir / _key_to_path(key)).unlink(missing_ok=True)
    flip_a_byte(store, key)
    with pytest.raises(heddle.BlobCorruptError), store.open(key) as f:
        f.read()
    assert not store.exists(key)


def test_a_missing_blob_is_a_blob_missing_error_naming_it(any_storage: str) -> None:
    store = blobs()
    key = "sha256:" + "ab" * 32
    for read in (store.get, store.local_file, store.open, store.size):
        with pytest.raises(heddle.BlobMissingError, match=key) as info:
            read(key)
        assert info.value.key == key


def test_a_blob_written_again_after_it_was_set_aside_is_whole(any_storage: str) -> None:
    store = blobs()
    data = os.urandom(9 * 2**20)
    key = store.put_stream([data])
    if store.root is None:
        (store.cache_dir / _key_to_path(key)).unlink(missing_ok=True)
    flip_a_byte(store, key)
    with pytest.raises(heddle.BlobCorruptError):
        store.local_file(key)
    assert store.put_stream([data[:100], data[100:]]) == key
    assert store.get(key) == data
    assert store.put(b"small") == store.put(b"small")


def test_the_table_preview_reports_a_corrupt_table(server: LiveServer) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import msgspec

    from heddle.server.values import view_of_literal

    session = get_session()
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(5000))}), buf)
    key = session.blobs.put(buf.getvalue())
    value = {"t": "parquet", "k": key, "rows": 5000, "cols": ["x"], "kind": "pandas"}
    literal = session.literals.to_literal(msgspec.msgpack.encode(value))
    st = server._server.config.app.state.heddle
    assert "rows" in view_of_literal(session.literals, literal, st.blob_link)["preview"]
    if session.blobs.root is None:
        (session.blobs.cache_dir / _key_to_path(key)).unlink(missing_ok=True)
    flip_a_byte(session.blobs, key, at=len(buf.getvalue()) // 2)
    preview = view_of_literal(session.literals, literal, st.blob_link)["preview"]
    assert "BlobCorruptError" in preview["error"] and key in preview["error"]


def test_a_put_writes_again_a_blob_another_process_set_aside(
    any_storage: str, tmp_path: Path
) -> None:
    store = blobs()
    small, big = os.urandom(5000), tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * 2**20))
    keys = [store.put(small), store.put_file(big)]
    other = BlobStore(store.url, cache_dir=tmp_path / "other-cache")  # another process
    for key in keys:
        flip_a_byte(other, key, at=10)
        with pytest.raises(heddle.BlobCorruptError):
            other.get(key)
    assert not any(store.exists(k) for k in keys)
    # This process remembers writing them; it must not trust that memory.
    assert [store.put(small), store.put_file(big)] == keys
    assert store.get(keys[0]) == small and store.get(keys[1]) == big.read_bytes()
