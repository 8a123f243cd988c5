"""Round trips of the data types through the type engine and the object store."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from heddle import TypeMismatchError
from heddle._types import codec_for, decode, encode


def roundtrip(value: Any, hint: Any) -> Any:
    return decode(encode(value, hint), hint)


def typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "f": [1.5, np.nan, -0.0, 3.25],
            "i": pd.array([1, None, 3, 4], dtype="Int64"),
            "s": pd.array(["a", None, "ccc", "d"], dtype="string"),
            "t": pd.date_range("2024-03-01", periods=4, freq="h", tz="Europe/Paris"),
            "naive": pd.to_datetime(["2020-01-01", "2021-06-30", None, "1999-12-31"]),
            "c": pd.Categorical(["x", "y", "x", None], categories=["y", "x"], ordered=True),
            "b": [True, False, True, False],
        },
        index=pd.Index(["w", "x", "y", "z"], name="key"),
    )


def test_pandas_frame_keeps_dtypes_index_and_values(any_storage: str) -> None:
    df = typed_frame()
    back = roundtrip(df, pd.DataFrame)
    pd.testing.assert_frame_equal(back, df)
    assert back["c"].cat.ordered and list(back["c"].cat.categories) == ["y", "x"]
    assert str(back["t"].dt.tz) == "Europe/Paris"


def test_pandas_series_keeps_name_and_index(any_storage: str) -> None:
    s = pd.Series(
        [1, 2, 3], index=pd.MultiIndex.from_tuples([(1, "a"), (1, "b"), (2, "a")]), name=("m", 1)
    )
    back = roundtrip(s, pd.Series)
    pd.testing.assert_series_equal(back, s)


def test_polars_frame_and_lazyframe(any_storage: str) -> None:
    df = pl.DataFrame(
        {
            "a": [1, None, 3],
            "s": ["x", "y", None],
            "d": pl.Series([1.0, 2.0, 3.0], dtype=pl.Float32),
            "l": [[1, 2], [], None],
        }
    )
    assert roundtrip(df, pl.DataFrame).equals(df)
    lazy = roundtrip(df.lazy().filter(pl.col("a") > 0), pl.LazyFrame)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.select("a", "s").collect().equals(df.filter(pl.col("a") > 0).select("a", "s"))


def test_arrow_table_and_record_batch_reader(any_storage: str) -> None:
    table = pa.table({"a": pa.array([1, 2, None], pa.int8()), "t": pa.array(["x", "y", "z"])})
    assert roundtrip(table, pa.Table).equals(table)
    batches = [pa.record_batch({"n": list(range(i, i + 3))}) for i in range(0, 9, 3)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, iter(batches))
    back = roundtrip(reader, pa.RecordBatchReader)
    assert isinstance(back, pa.RecordBatchReader)
    assert back.read_all().column("n").to_pylist() == list(range(9))


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.asfortranarray(np.random.default_rng(0).random((200, 100))),  # blob, F order
        np.array(3.5),
        np.zeros(4, dtype=[("x", "<i4"), ("y", "<f8"), ("tag", "S3")]),
        np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]"),
        np.array([1 + 2j], dtype=np.complex64),
        np.zeros((0, 5)),
        np.arange(10)[::2],  # not contiguous
    ],
    ids=["int16-3d", "fortran-blob", "0d", "structured", "datetime", "complex", "empty", "strided"],
)
def test_numpy_arrays_round_trip_without_pickle(home: object, array: np.ndarray[Any, Any]) -> None:
    plain_bytes = encode(array, np.ndarray)
    assert b"pickle" not in plain_bytes
    back = roundtrip(array, np.ndarray)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.flags.f_contiguous == array.flags.f_contiguous or array.ndim < 2
    np.testing.assert_array_equal(back, array)


def test_numpy_object_arrays_and_wrong_dtypes_are_refused(home: object) -> None:
    with pytest.raises(TypeMismatchError, match="pickle"):
        encode(np.array([{"a": 1}], dtype=object), np.ndarray)
    with pytest.raises(TypeMismatchError, match="float64"):
        encode(np.arange(3), npt.NDArray[np.float64])
    assert roundtrip(np.ones(2), npt.NDArray[np.float64]).dtype == np.float64


def test_frames_inside_containers(home: object) -> None:
    frames = {"a": pd.DataFrame({"x": [1]}), "b": pd.DataFrame({"x": [2]})}
    back = roundtrip(frames, dict[str, pd.DataFrame])
    assert back["b"]["x"].tolist() == [2]


def test_wrong_value_for_a_table_hint_is_a_mismatch(home: object) -> None:
    with pytest.raises(TypeMismatchError, match="DataFrame"):
        encode([1, 2], pd.DataFrame)


def test_importing_heddle_does_not_import_data_libraries() -> None:
    import subprocess

    code = (
        "import sys, heddle;"
        "bad = [m for m in ('pandas', 'polars', 'pyarrow', 'numpy', 'torch', 'pandera')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_codec_lookup_for_table_hints_is_lazy_and_cached() -> None:
    assert codec_for(pd.DataFrame) is codec_for(pd.DataFrame)
    assert type(codec_for(pl.LazyFrame)).__name__ == "TableCodec"


def test_torch_tensors_and_modules(home: object) -> None:
    torch = pytest.importorskip("torch", reason="torch is an optional extra and not installed")
    t = torch.arange(12, dtype=torch.float16).reshape(3, 4).t()  # non-contiguous
    back = roundtrip(t, torch.Tensor)
    assert back.dtype == t.dtype and torch.equal(back, t)
    model = torch.nn.Linear(3, 2)
    again = roundtrip(model, torch.nn.Linear)
    assert torch.equal(again.weight, model.weight)
