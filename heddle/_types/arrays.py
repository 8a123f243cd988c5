"""Codec for numpy arrays: the .npy format (any dtype and shape, C or Fortran order,
structured dtypes), never pickle. Small arrays stay inline; large ones are streamed
into a blob and read back from a verified local file.
"""

from __future__ import annotations

import io
import typing
from typing import Any

import numpy as np

from heddle._errors import TypeMismatchError
from heddle._types._base import Codec
from heddle._types.blobio import read_blob, write_blob

INLINE_BYTES = 32 * 1024


def _write(arr: np.ndarray[Any, Any], f: Any) -> None:
    np.lib.format.write_array(f, arr, allow_pickle=False)


def _read(source: Any) -> np.ndarray[Any, Any]:
    if hasattr(source, "open"):
        with source.open("rb") as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    return np.lib.format.read_array(source, allow_pickle=False)


class NDArrayCodec(Codec):
    """{"t": "npy", "b": bytes} inline, or {"t": "npy", "k": key, "shape", "dtype"}."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (np.ndarray,)
        args = typing.get_args(hint)
        # npt.NDArray[np.float64] is ndarray[shape, dtype[float64]]: check the dtype.
        self._dtype: Any = None
        if len(args) == 2:
            dargs = typing.get_args(args[1])
            if dargs and isinstance(dargs[0], type) and issubclass(dargs[0], np.generic):
                self._dtype = np.dtype(dargs[0])

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, np.ndarray):
            raise self.mismatch(value, path)
        if self._dtype is not None and value.dtype != self._dtype:
            raise TypeMismatchError(f"ndarray of {self._dtype}", f"ndarray of {value.dtype}", path)
        if value.dtype.hasobject:
            raise TypeMismatchError(
                "ndarray of a fixed-size dtype",
                f"ndarray of {value.dtype} (objects need pickle; use a list or a table)",
                path,
            )
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        if value.nbytes <= INLINE_BYTES:
            buf = io.BytesIO()
            _write(value, buf)
            return {"t": "npy", "b": buf.getvalue()}
        key = write_blob(lambda f: _write(value, f))
        return {"t": "npy", "k": key, "shape": list(value.shape), "dtype": value.dtype.str}

    def from_plain(self, plain: Any) -> Any:
        if "b" in plain:
            return _read(io.BytesIO(plain["b"]))
        return read_blob(plain["k"], _read)
