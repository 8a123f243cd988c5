"""Registration of the codec families for optional libraries (tables, arrays, tensors,
pandera), without importing those libraries.

Predicates look at module and class names only; a family's module (and its library)
is imported the first time a hint of it needs a codec.
"""

from __future__ import annotations

import typing
from typing import Any

from heddle._types._base import Codec, register


def _roots(hint: Any) -> list[tuple[str, str]]:
    cls = typing.get_origin(hint) or hint
    if not isinstance(cls, type):
        return []
    try:
        mro = cls.__mro__
    except AttributeError:
        return []
    return [(c.__module__.partition(".")[0], c.__name__) for c in mro]


_TABLES = {
    ("pandas", "DataFrame"),
    ("pandas", "Series"),
    ("polars", "DataFrame"),
    ("polars", "LazyFrame"),
    ("pyarrow", "Table"),
    ("pyarrow", "RecordBatchReader"),
}


def is_table_hint(hint: Any) -> bool:
    return any(r in _TABLES for r in _roots(hint))


def is_ndarray_hint(hint: Any) -> bool:
    return ("numpy", "ndarray") in _roots(hint)


def is_torch_hint(hint: Any) -> bool:
    roots = _roots(hint)
    return ("torch", "Tensor") in roots or ("torch", "Module") in roots


def is_pandera_hint(hint: Any) -> bool:
    """Annotated[frame, pandera schema or model], or pandera.typing.DataFrame[Model]."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return any(_is_pandera_object(m) for m in typing.get_args(hint)[1:])
    return (
        origin is not None
        and any(r[0] == "pandera" for r in _roots(origin))
        and any(r in _TABLES for r in _roots(origin))
    )


def _is_pandera_object(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return any(c.__module__.partition(".")[0] == "pandera" for c in cls.__mro__)


def _table_codec(hint: Any) -> Codec:
    from heddle._types.tables import table_codec

    return table_codec(hint)


def _ndarray_codec(hint: Any) -> Codec:
    from heddle._types.arrays import NDArrayCodec

    return NDArrayCodec(hint)


def _torch_codec(hint: Any) -> Codec:
    from heddle._types.tensors import torch_codec

    return torch_codec(hint)


def _pandera_codec(hint: Any) -> Codec:
    from heddle._types.pandera_plugin import pandera_codec

    return pandera_codec(hint)


def register_optional_families() -> None:
    register(is_table_hint, _table_codec)
    register(is_ndarray_hint, _ndarray_codec)
    register(is_torch_hint, _torch_codec)
    # After the Annotated alias (dynamic.py), so it wins for schema-annotated frames.
    register(is_pandera_hint, _pandera_codec)
