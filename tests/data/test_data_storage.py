"""The blob store: streaming writes hashed on the way, dedupe, verified reads, parallel
transfers and multipart uploads, on the local folder and on S3 (moto)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import obstore
import pandas as pd
import pytest

import heddle
from heddle._sdk.config import get_session
from heddle._storage import BlobStore, blob_key
from heddle._storage.blobs import _key_to_path
from heddle._types import decode, encode


def blobs() -> BlobStore:
    return get_session().blobs


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def corrupt(store: BlobStore, key: str) -> None:
    """Overwrite a blob's bytes in place (a disk or bucket going bad)."""
    store._known.discard(key)
    store._verified.clear()
    obstore.put(store._store, _key_to_path(key), b"not what was written")
    if store.root is None:
        (store.cache_dir / _key_to_path(key)).unlink(missing_ok=True)


def test_streamed_blob_is_keyed_by_the_hash_of_all_its_bytes(any_storage: str) -> None:
    parts = [os.urandom(3 * 2**20) for _ in range(4)] + [b"tail"]  # > one 8 MiB chunk
    store = blobs()
    key = store.put_stream(parts)
    assert key == sha(b"".join(parts))
    assert store.get(key) == b"".join(parts)
    with store.open(key) as f:
        assert f.read() == b"".join(parts)


def test_same_frame_twice_is_one_blob(any_storage: str) -> None:
    df = pd.DataFrame({"x": range(1000), "y": [str(i) for i in range(1000)]})
    first, second = encode(df, pd.DataFrame), encode(df.copy(), pd.DataFrame)
    assert first == second
    listed = obstore.list(blobs()._store, prefix="blobs").collect()
    assert len([o for o in listed if o["path"].startswith("blobs/")]) == 1
    assert not obstore.list(blobs()._store, prefix="tmp").collect()  # no leftovers


def test_corrupt_blob_is_an_error_naming_the_blob(any_storage: str) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    data = encode(df, pd.DataFrame)
    key = next(k for k in _keys(blobs()))
    corrupt(blobs(), key)
    from heddle._types import tables

    tables._originals.clear()
    with pytest.raises(heddle.BlobCorruptError, match=key) as info:
        decode(data, pd.DataFrame)
    assert info.value.key == key
    # Found corrupt, the blob was set aside: from now on it reads as missing, so the
    # action that made it runs again on recovery.
    with pytest.raises(heddle.BlobMissingError, match=key):
        blobs().get(key)
    with pytest.raises(heddle.BlobMissingError):
        blobs().open(key)
    corrupt(blobs(), blobs().put(b"another blob"))
    with pytest.raises(heddle.BlobCorruptError), blobs().open(blob_key(b"another blob")) as f:
        f.read()


def _keys(store: BlobStore) -> list[str]:
    listed = obstore.list(store._store, prefix="blobs").collect()
    return ["sha256:" + "".join(o["path"].split("/")[1:]) for o in listed]


def test_put_file_hashes_an_unchanged_file_once(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2**20))
    store = blobs()
    key = store.put_file(path)
    assert key == sha(path.read_bytes())
    os.chmod(path, 0o000)  # a second hash would have to open it
    try:
        assert store.put_file(path) == key
    finally:
        os.chmod(path, 0o644)


def test_parallel_puts_and_gets(any_storage: str, tmp_path: Path) -> None:
    datas = [os.urandom(1000 + i) for i in range(40)]
    store = blobs()
    keys = store.put_many(datas)
    assert keys == [sha(d) for d in datas]
    assert store.get_many(keys) == datas
    files = []
    for i, d in enumerate(datas[:10]):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(d)
    assert store.put_files(files) == keys[:10]


def test_aborted_writer_leaves_nothing(any_storage: str) -> None:
    store = blobs()
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(os.urandom(9 * 2**20))
        raise RuntimeError("producer failed")
    assert not obstore.list(store._store, prefix="tmp").collect()
    assert not obstore.list(store._store, prefix="blobs").collect()


def test_s3_blobs_live_under_the_url_prefix_and_use_multipart(s3_home: str) -> None:
    import boto3

    bucket = s3_home.split("/")[2]
    data = os.urandom(17 * 2**20)  # three 8 MiB parts
    key = blobs().put_stream([data[i : i + 2**20] for i in range(0, len(data), 2**20)])
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    names = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert names == ["runs/" + _key_to_path(key)]
    head = s3.head_object(Bucket=bucket, Key=names[0])
    assert head["ContentLength"] == len(data)
    # A fresh store on the same URL has no local cache: it downloads and verifies.
    fresh = BlobStore(s3_home, cache_dir=Path.cwd() / "other-cache")
    assert fresh.local_file(key).read_bytes() == data


def test_legacy_put_get_still_work(any_storage: str) -> None:
    store = blobs()
    key = store.put(b"small")
    assert store.get(key) == b"small"
    store.put_text("logs/a.txt", b"line")
    assert store.get_text("logs/a.txt") == b"line"
    assert store.get_text("logs/missing.txt") is None
