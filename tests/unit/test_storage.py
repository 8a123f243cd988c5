"""Content-addressed blobs on a local folder: round trips, dedupe, corruption and
missing blobs; and literals that spill large values into blobs."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

import heddle
from heddle._runtime.literals import LiteralStore, literal_blob_key
from heddle._storage import BlobStore


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def file_of(root: Path, key: str) -> Path:
    digest = key.partition(":")[2]
    (path,) = [p for p in blob_files(root) if digest.endswith(p.name) and p.name]
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 4096])
def test_put_then_get_returns_the_same_bytes(root: Path, data: bytes) -> None:
    blobs = BlobStore(str(root))
    key = blobs.put(data)
    assert blobs.get(key) == data
    # A new handle (another process) reads it too.
    assert BlobStore(str(root)).get(key) == data


def test_key_is_the_sha256_of_the_content(root: Path) -> None:
    key = BlobStore(str(root)).put(b"payload")
    assert key == "sha256:" + hashlib.sha256(b"payload").hexdigest()


def test_same_content_is_stored_once(root: Path) -> None:
    blobs = BlobStore(str(root))
    first = blobs.put(b"same bytes")
    second = blobs.put(b"same bytes")
    third = BlobStore(str(root)).put(b"same bytes")
    assert first == second == third
    assert len(blob_files(root)) == 1
    other = blobs.put(b"other bytes")
    assert other != first
    assert len(blob_files(root)) == 2


def test_corrupt_blob_raises_blob_corrupt_error_naming_the_key(root: Path) -> None:
    key = BlobStore(str(root)).put(b"precious data")
    file_of(root, key).write_bytes(b"tampered data")
    with pytest.raises(heddle.BlobCorruptError) as info:
        BlobStore(str(root)).get(key)
    error = info.value
    assert isinstance(error, heddle.StorageError)
    assert error.key == key
    assert key in str(error)
    assert error.actual == "sha256:" + hashlib.sha256(b"tampered data").hexdigest()


def test_truncated_blob_is_detected(root: Path) -> None:
    data = os.urandom(100_000)
    key = BlobStore(str(root)).put(data)
    file_of(root, key).write_bytes(data[:50_000])
    with pytest.raises(heddle.BlobCorruptError, match=key):
        BlobStore(str(root)).get(key)


def test_missing_blob_raises_storage_error(root: Path) -> None:
    blobs = BlobStore(str(root))
    key = "sha256:" + hashlib.sha256(b"never written").hexdigest()
    with pytest.raises(heddle.StorageError, match=key.partition(":")[2][:16]):
        blobs.get(key)


def test_deleted_blob_raises_storage_error(root: Path) -> None:
    key = BlobStore(str(root)).put(b"short-lived")
    file_of(root, key).unlink()
    with pytest.raises(heddle.StorageError):
        BlobStore(str(root)).get(key)


@pytest.mark.parametrize(
    "bad", ["", "md5:abc", "sha256:xyz", "sha256:" + "A" * 64, "../etc/passwd"]
)
def test_malformed_keys_are_refused(root: Path, bad: str) -> None:
    with pytest.raises(heddle.StorageError):
        BlobStore(str(root)).get(bad)


def test_async_put_and_get(root: Path) -> None:
    async def main() -> bytes:
        blobs = BlobStore(str(root))
        key = await blobs.put_async(b"async bytes")
        assert key == BlobStore(str(root)).put(b"async bytes")
        return await blobs.get_async(key)

    assert asyncio.run(main()) == b"async bytes"


def test_file_url_points_at_a_local_folder(root: Path) -> None:
    key = BlobStore(f"file://{root}").put(b"via url")
    assert BlobStore(str(root)).get(key) == b"via url"


# -- literals --------------------------------------------------------------------------


def test_small_literals_stay_inline_and_large_ones_become_blobs(root: Path) -> None:
    literals = LiteralStore(BlobStore(str(root)), inline_limit=16)
    small, large = b"x" * 16, b"y" * 17
    small_lit, large_lit = literals.to_literal(small), literals.to_literal(large)
    assert literal_blob_key(small_lit) is None
    key = literal_blob_key(large_lit)
    assert key == "sha256:" + hashlib.sha256(large).hexdigest()
    assert literals.from_literal(small_lit) == small
    assert literals.from_literal(large_lit) == large
    assert len(blob_files(root)) == 1


def test_unknown_literal_tag_is_a_store_error(root: Path) -> None:
    with pytest.raises(heddle.StoreError, match="literal tag"):
        LiteralStore(BlobStore(str(root))).from_literal(b"zgarbage")


def test_large_run_output_lives_in_a_blob_and_corruption_is_reported(home: Path) -> None:
    env = heddle.TaskEnvironment(name="storage")

    @env.task
    async def big(n: int) -> bytes:
        return bytes(range(256)) * n

    run = heddle.run(big, 1024)  # 256 KiB: past the inline limit
    assert run.outputs() == bytes(range(256)) * 1024
    literal = run.record.output
    assert literal is not None
    key = literal_blob_key(literal)
    assert key is not None
    path = file_of(home, key)
    path.write_bytes(b"\x00" * path.stat().st_size)
    with pytest.raises(heddle.BlobCorruptError) as info:
        heddle.get_run(run.id).outputs()
    assert info.value.key == key
