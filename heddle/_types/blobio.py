"""Streaming blob I/O for codecs of large values (tables, arrays, tensors).

Writes stream into the session's blob store while they are hashed; reads get a
verified local file. Sinks that only offer put/get (tests, plugins) are buffered.
"""

from __future__ import annotations

import io
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from heddle._errors import HeddleError
from heddle._types.sink import get_sink

T = TypeVar("T")


class _Sink(io.RawIOBase):
    """Hands a writer to a library that may close it without finishing the blob."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return int(self._target.write(data))

    def tell(self) -> int:
        return int(self._target.tell())


def write_blob(fill: Callable[[Any], None]) -> str:
    """Run ``fill(file)`` against a new blob and return its key."""
    sink: Any = get_sink()
    if hasattr(sink, "writer"):
        with sink.writer() as w:
            fill(_Sink(w))
        return str(w.key)
    buf = io.BytesIO()
    fill(buf)
    return str(sink.put(buf.getvalue()))


def read_blob(key: str, parse: Callable[[Any], T]) -> T:
    """``parse(source)``: source is a verified local Path (or a BytesIO for simple sinks)."""
    sink: Any = get_sink()
    if hasattr(sink, "read_file"):
        return typing.cast(T, sink.read_file(key, parse))
    return parse(io.BytesIO(sink.get(key)))


def local_path(key: str) -> Path:
    """A verified local path of a blob, for lazy readers (polars scans, batch readers)."""
    sink: Any = get_sink()
    if hasattr(sink, "local_file"):
        return Path(sink.local_file(key))
    raise HeddleError("the session's blob sink cannot give local files for lazy reads")
