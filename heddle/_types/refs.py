"""The blobs an encoded value refers to (tables, arrays, tensors, files, dirs), found by
walking its plain tree with the codecs that made it.

The walk follows the container codecs (lists, dicts, tuples, sets, unions, dataclasses,
named tuples, typed dicts) down to their leaves, so a user's own dict that happens to
look like a reference is never taken for one. Leaves of the data codecs are recognised
by the shape of their plain form; values stored through the dynamic codec or pickle
carry no references Heddle can see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from heddle._types import builtins, containers, dynamic, structured
from heddle._types._base import Codec

_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")


class BlobRef(NamedTuple):
    """One blob a value refers to. ``size`` is its length when the value records it;
    a ``dir`` blob is a manifest listing the blobs of the directory's files."""

    key: str
    size: int | None = None
    kind: str = "blob"


class _Opaque(Codec):
    """Stands for a field whose codec cannot be found: no references are looked for."""

    def to_plain(self, value: Any, path: str = "") -> Any:
        raise NotImplementedError

    def from_plain(self, plain: Any) -> Any:
        raise NotImplementedError


_OPAQUE = _Opaque(Any)


# Codecs whose values never refer to blobs (scalars, and values the walk cannot see into).
_NO_REFS: tuple[type[Codec], ...] = (
    builtins.IntCodec,
    builtins.FloatCodec,
    builtins.ExactScalarCodec,
    builtins.DatetimeCodec,
    builtins.DateCodec,
    builtins.TimedeltaCodec,
    builtins.DecimalCodec,
    builtins.UUIDCodec,
    builtins.PathCodec,
    builtins.EnumCodec,
    containers.LiteralCodec,
    dynamic.DynamicCodec,
    dynamic.PickleCodec,
    structured.PydanticCodec,
    _Opaque,
)


def blob_refs(codec: Codec, plain: Any) -> Iterator[BlobRef]:
    """Every blob reference in ``plain``, a tree that ``codec.to_plain`` produced."""
    stack: list[tuple[Codec, Any]] = [(codec, plain)]
    while stack:
        c, p = stack.pop()
        if p is None or isinstance(c, _NO_REFS):
            continue
        inner = _inner(c, p)
        if inner is None:
            yield from _data_refs(p)
        else:
            stack.extend(inner)


def _inner(c: Codec, p: Any) -> list[tuple[Codec, Any]] | None:
    """The (codec, plain) pairs inside a container's plain, or None for a leaf codec."""
    if isinstance(c, containers.SequenceCodec | containers.SetCodec):
        return [(c._item, x) for x in p]
    if isinstance(c, containers.TupleCodec):
        if c._variadic is not None:
            return [(c._variadic, x) for x in p]
        return list(zip(c._fixed, p, strict=False))
    if isinstance(c, containers.DictCodec):
        pairs = p.items() if isinstance(p, dict) else p
        return [pair for k, v in pairs for pair in ((c._key, k), (c._value, v))]
    if isinstance(c, containers.OptionalCodec):
        return [(c._inner, p)]
    if isinstance(c, containers.UnionCodec):
        return [(c._members[p[0]], p[1])]
    if isinstance(c, structured.DataclassCodec | structured.TypedDictCodec):
        fields = c._fields if c._fields is not None else c._resolve()
        return [(_codec_of(to_plain), p[name]) for name, to_plain, _ in fields if name in p]
    if isinstance(c, structured.NamedTupleCodec):
        fields = c._fields if c._fields is not None else c._resolve()
        return [(_codec_of(to_plain), x) for (_, to_plain, _), x in zip(fields, p, strict=False)]
    return None


def _codec_of(bound_to_plain: Any) -> Codec:
    # Structured codecs keep each field's bound to_plain; its __self__ is the codec.
    owner = getattr(bound_to_plain, "__self__", None)
    return owner if isinstance(owner, Codec) else _OPAQUE


def _data_refs(plain: Any) -> Iterator[BlobRef]:
    """The references in the plain form of a data codec: {"t": format, "k": key, ...}
    or {"t": format, "parts": [keys], ...}."""
    if not isinstance(plain, dict) or not isinstance(plain.get("t"), str):
        return
    fmt = plain["t"]
    key = plain.get("k")
    if isinstance(key, str) and _KEY.match(key):
        size = plain.get("size") if fmt == "file" else None
        yield BlobRef(
            key, size if isinstance(size, int) else None, "dir" if fmt == "dir" else "blob"
        )
    parts = plain.get("parts")
    if isinstance(parts, list):
        for part in parts:
            if isinstance(part, str) and _KEY.match(part):
                yield BlobRef(part)
