"""Finding the blobs an encoded value refers to, by walking its plain tree with the
codecs that made it: references inside containers and fields are found, user data that
merely looks like a reference is not."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional, TypedDict

import pandas as pd

import heddle
from heddle._types import codec_for
from heddle._types.refs import BlobRef, blob_refs

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64
FILE = {"t": "file", "k": A, "name": "x.txt", "size": 12}
TABLE = {"t": "parquet", "k": B, "rows": 3, "cols": ["x"], "kind": "pandas.DataFrame"}


@dataclasses.dataclass
class Bundle:
    name: str
    table: pd.DataFrame
    files: list[heddle.File]


class Pair(NamedTuple):
    left: heddle.File
    right: int


class Shape(TypedDict):
    folder: heddle.Dir


def refs(hint: Any, plain: Any) -> list[BlobRef]:
    return sorted(blob_refs(codec_for(hint), plain))


def test_a_file_reference_carries_its_size() -> None:
    assert refs(heddle.File, FILE) == [BlobRef(A, 12)]


def test_references_inside_containers_are_found() -> None:
    assert refs(list[heddle.File], [FILE, FILE]) == [BlobRef(A, 12), BlobRef(A, 12)]
    assert refs(dict[str, pd.DataFrame], {"t": TABLE}) == [BlobRef(B)]
    assert refs(tuple[int, pd.DataFrame], [1, TABLE]) == [BlobRef(B)]
    assert refs(Optional[pd.DataFrame], None) == []  # noqa: UP045
    assert refs(Optional[pd.DataFrame], TABLE) == [BlobRef(B)]  # noqa: UP045
    union = codec_for(int | heddle.File)
    assert sorted(blob_refs(union, union.to_plain(3))) == []


def test_references_in_dataclass_namedtuple_and_typeddict_fields_are_found() -> None:
    bundle = {"name": "b", "table": TABLE, "files": [FILE]}
    assert refs(Bundle, bundle) == [BlobRef(A, 12), BlobRef(B)]
    assert refs(Pair, [FILE, 3]) == [BlobRef(A, 12)]
    assert refs(Shape, {"folder": {"t": "dir", "k": C, "name": "d"}}) == [BlobRef(C, None, "dir")]


def test_a_dataframe_handle_refers_to_each_of_its_parts() -> None:
    plain = {"t": "dataframe", "parts": [A, B], "rows": 2, "cols": ["x"]}
    assert refs(heddle.DataFrame, plain) == [BlobRef(A), BlobRef(B)]


def test_user_data_that_looks_like_a_reference_is_not_one() -> None:
    assert refs(dict[str, str], {"t": "file", "k": A}) == []
    assert refs(dict[str, Any], {"dict": {"t": "file", "k": A}}) == []
    assert refs(Any, {"dict": {"t": "file", "k": A}}) == []
    assert refs(list[str], [A, B]) == []
