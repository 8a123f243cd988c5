"""File, Dir and DataFrame handles: lazy upload, lazy and cached download, streaming."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import heddle
from heddle._sdk.config import get_session
from heddle._types import decode, encode


def test_local_file_is_uploaded_only_when_it_crosses_a_boundary(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.bin"
    data = os.urandom(3 * 2**20)
    path.write_bytes(data)
    f = heddle.File.from_local(path)
    assert f.key is None and f.download() == path  # still local, nothing uploaded
    back = decode(encode(f, heddle.File), heddle.File)
    assert f.key is not None and back.key == f.key and back.name == "in.bin"
    assert back.size == len(data)
    local = back.download()
    assert local.read_bytes() == data and local != path
    assert back.download() == local  # cached: fetched once
    with back.open("rb") as stream:
        assert stream.read(10) == data[:10]
        assert stream.read() == data[10:]
    copy = back.download(tmp_path / "copy" / "x.bin")
    assert copy.read_bytes() == data


def test_new_remote_file_streams_writes_into_the_store(any_storage: str) -> None:
    f = heddle.File.new_remote("big.bin")
    chunks = [os.urandom(2**20) for _ in range(10)]
    with f.open("wb") as out:
        for c in chunks:
            out.write(c)
    assert f.key is not None and f.size == 10 * 2**20
    back = decode(encode(f, heddle.File), heddle.File)
    assert back.read_bytes() == b"".join(chunks)
    with pytest.raises(heddle.StorageError, match="immutable"):
        f.open("wb")


def test_unwritten_remote_file_cannot_cross_a_boundary(home: Path) -> None:
    with pytest.raises(heddle.TypeMismatchError, match="never written"):
        encode(heddle.File.new_remote("empty"), heddle.File)


def test_dir_uploads_in_parallel_and_downloads_lazily(any_storage: str, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for i in range(30):
        p = root / f"d{i % 3}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(str(i))
    d = decode(encode(heddle.Dir.from_local(root), heddle.Dir), heddle.Dir)
    files = list(d.walk())
    assert len(files) == 30 and files[0].name == "d0/f0.txt"
    assert {f.name: f.read_bytes() for f in files}["d2/f29.txt"] == b"29"
    local = d.download()
    assert (local / "d1" / "f4.txt").read_text() == "4"
    assert d.download() == local
    again = d.download(tmp_path / "elsewhere")
    assert sorted(p.name for p in again.rglob("*.txt")) == sorted(f"f{i}.txt" for i in range(30))


def test_same_dir_content_gives_the_same_key(home: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_text("same")
    a = heddle.Dir.from_local(tmp_path / "a").upload()
    b = heddle.Dir.from_local(tmp_path / "b").upload()
    assert a.key == b.key


def test_dataframe_handle_reads_columns_and_batches(any_storage: str) -> None:
    handle = heddle.DataFrame.from_parts(
        [
            pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
            pl.DataFrame({"a": [3], "b": ["z"]}),
        ]
    )
    back = decode(encode(handle, heddle.DataFrame), heddle.DataFrame)
    assert back.num_rows == 3 and back.columns == ["a", "b"] and len(back.parts) == 2
    only_a = back.open(pd.DataFrame, columns=["a"]).all()
    assert list(only_a.columns) == ["a"] and only_a["a"].tolist() == [1, 2, 3]
    assert back.open(pl.DataFrame).all()["b"].to_list() == ["x", "y", "z"]
    table = back.open(columns=["b"]).all()
    assert isinstance(table, pa.Table) and table.column_names == ["b"]
    batches = list(back.open(pl.DataFrame, columns=["a"]).iter(batch_rows=1))
    assert [b["a"].to_list() for b in batches] == [[1], [2], [3]]


def test_dataframe_handle_from_local_parquet_folder(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    for i in range(3):
        pq.write_table(pa.table({"k": [i, i], "v": [0.5, 1.5]}), folder / f"part-{i}.parquet")
    handle = heddle.DataFrame.from_local(folder)
    assert handle.num_rows == 6 and len(handle.parts) == 3
    assert sorted(handle.open(pl.DataFrame, columns=["k"]).all()["k"].to_list()) == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]


def test_handle_encoding_never_reads_the_data(home: Path) -> None:
    handle = heddle.DataFrame.from_df(pd.DataFrame({"a": range(10)})).upload()
    blobs = get_session().blobs
    part = handle.parts[0]
    (blobs.root / "blobs" / part[7:9] / part[9:]).unlink()  # gone: any read would fail
    again = decode(encode(handle, heddle.DataFrame), heddle.DataFrame)
    assert again.parts == handle.parts and again.num_rows == 10


# -- local paths that vanish before or while they are uploaded ---------------------------


def test_dir_from_local_of_a_missing_folder_is_refused_naming_it(
    home: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(heddle.StorageError, match=r"nope.* is not a directory"):
        heddle.Dir.from_local(missing)


def test_dir_whose_folder_was_removed_before_upload_raises_instead_of_going_empty(
    home: Path, tmp_path: Path
) -> None:
    root = tmp_path / "scratch"
    root.mkdir()
    (root / "a.txt").write_text("a")
    d = heddle.Dir.from_local(root)
    (root / "a.txt").unlink()
    root.rmdir()
    with pytest.raises(heddle.StorageError, match=f"{root}.* no longer exists.*upload"):
        d.upload()
    with pytest.raises(heddle.StorageError, match="no longer exists"):
        list(d.walk())
    with pytest.raises(heddle.TypeMismatchError, match=f"expected Dir.*{root}"):
        encode(d, heddle.Dir)
    assert d.key is None


def test_dir_with_a_file_that_vanished_after_listing_raises_naming_the_file(
    home: Path, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "kept.txt").write_text("kept")
    (root / "gone.txt").symlink_to(tmp_path / "removed-target")  # listed, but cannot be read
    with pytest.raises(heddle.StorageError, match=r"gone\.txt"):
        heddle.Dir.from_local(root).upload()


def test_dir_records_the_size_of_what_it_uploaded(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "x.bin").write_bytes(b"1234")
    d = heddle.Dir.from_local(root).upload()
    (root / "x.bin").unlink()  # gone after the upload: the stored Dir does not care
    back = decode(encode(d, heddle.Dir), heddle.Dir)
    [f] = list(back.walk())
    assert (f.name, f.size, f.read_bytes()) == ("x.bin", 4, b"1234")


def test_file_removed_before_upload_raises_naming_it(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("a,b\n")
    f = heddle.File.from_local(path)
    path.unlink()
    with pytest.raises(heddle.StorageError, match=f"{path}.* no longer exists.*upload"):
        f.upload()
    with pytest.raises(heddle.TypeMismatchError, match=r"out\.csv"):
        encode(f, heddle.File)


def test_a_stored_handle_passed_for_a_frame_is_not_read_or_written_again(home: Path) -> None:
    handle = heddle.DataFrame.from_df(pd.DataFrame({"a": range(10)})).upload()
    plain = msgspec.msgpack.decode(encode(handle, pd.DataFrame))
    assert plain["k"] == handle.parts[0] and plain["rows"] == 10
    frame = decode(encode(handle, pd.DataFrame), pd.DataFrame)
    assert frame["a"].tolist() == list(range(10))
    # A frame this process decoded, passed on as a handle, keeps its blob too.
    again = decode(encode(frame, heddle.DataFrame), heddle.DataFrame)
    assert again.parts == handle.parts
    as_polars = decode(encode(frame, pl.DataFrame), pl.DataFrame)
    assert as_polars["a"].to_list() == list(range(10))


def test_a_series_or_a_list_is_not_taken_for_a_frame(home: Path) -> None:
    handle = heddle.DataFrame.from_df(pd.DataFrame({"a": [1]}))
    with pytest.raises(heddle.TypeMismatchError, match="expected Series"):
        encode(handle, pd.Series)
    with pytest.raises(heddle.TypeMismatchError, match="expected DataFrame, got list"):
        encode([1, 2], heddle.DataFrame)
    with pytest.raises(heddle.TypeMismatchError, match="expected DataFrame"):
        encode(pd.Series([1]), heddle.DataFrame)
