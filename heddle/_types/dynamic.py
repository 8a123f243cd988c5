"""The dynamic codec for Any, object and missing annotations, and the cloudpickle fallback
for types no codec claims.

Dynamic values carry their own type: builtins get a tag, everything else is pickled.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import typing
import uuid
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import cloudpickle

from heddle._errors import TypeMismatchError
from heddle._types._base import (
    Codec,
    codec_for,
    describe,
    is_annotated,
    is_dynamic,
    msgpack_encoder,
    register,
    set_fallback,
    type_name,
)
from heddle._types.builtins import (
    INT_MAX,
    INT_MIN,
    PICKLE_PROTOCOL,
    DateCodec,
    DatetimeCodec,
    DecimalCodec,
    TimedeltaCodec,
    UUIDCodec,
)
from heddle._types.storable import check_int


class PickleFallbackWarning(UserWarning):
    """A value was stored with cloudpickle because no codec understands its type."""


_warned: set[Any] = set()


def reset_pickle_warnings() -> None:
    """Forget which types already warned, so the next pickled value warns again (tests)."""
    _warned.clear()


def _warn_once(cls: type, dynamic: bool) -> None:
    key = (cls.__module__, cls.__qualname__)
    if key in _warned:
        return
    _warned.add(key)
    name = f"{cls.__module__}.{cls.__qualname__}"
    advice = (
        "annotate the parameter or return value with a concrete type"
        if dynamic
        else "use a dataclass or a pydantic model, or register a codec for it"
    )
    warnings.warn(
        f"{name} has no codec, so its values are stored with cloudpickle (opaque, and "
        f"tied to the Python and library versions that wrote them); {advice}",
        PickleFallbackWarning,
        stacklevel=2,
    )


def _pickle(value: Any, expected: str, path: str, dynamic: bool) -> dict[str, bytes]:
    _warn_once(type(value), dynamic)
    try:
        data: bytes = cloudpickle.dumps(value, protocol=PICKLE_PROTOCOL)
    except Exception as exc:  # pickling raises many types: TypeError, PicklingError, ...
        given = f"unpicklable {describe(value)} ({type(exc).__name__})"
        raise TypeMismatchError(expected, given, path) from exc
    return {"pickle": data}


class PickleCodec(Codec):
    """Hints no codec claims (custom classes, numpy arrays for now): cloudpickle bytes,
    tagged {"pickle": bytes} so a codec registered later can tell old pickles apart."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        # Only a class can be checked with isinstance; Callable[...] and friends cannot.
        self._check = hint if isinstance(hint, type) else None
        self.exact_types = (hint,) if isinstance(hint, type) else ()

    def to_plain(self, value: Any, path: str = "") -> Any:
        if self._check is not None and not isinstance(value, self._check):
            raise self.mismatch(value, path)
        return _pickle(value, type_name(self.hint), path, dynamic=False)

    def from_plain(self, plain: Any) -> Any:
        return cloudpickle.loads(plain["pickle"])


class DynamicCodec(Codec):
    """Any value, self-described so it decodes to the same type.

    None, bool, float, str, bytes, 64-bit ints and lists are msgpack-native and stored as
    they are. Every other value is a one-key map {tag: data}; a bare map never occurs, so
    the two forms cannot be confused.
    """

    def to_plain(self, value: Any, path: str = "") -> Any:
        cls = type(value)
        if cls is str or cls is float or cls is bool or value is None or cls is bytes:
            return value
        if cls is int:
            if INT_MIN <= value <= INT_MAX:
                return value
            check_int(value, path)
            return {"int": str(value)}
        if cls is list:
            return [self.to_plain(v) for v in value]
        tagged = _TAGGED.get(cls)
        if tagged is not None:
            tag, to_plain, _ = tagged
            return {tag: to_plain(self, value)}
        return _pickle(value, "Any", path, dynamic=True)

    def from_plain(self, plain: Any) -> Any:
        cls = type(plain)
        if cls is list:
            return [self.from_plain(p) for p in plain]
        if cls is not dict:
            return plain
        ((tag, data),) = plain.items()
        if tag == "pickle":
            return cloudpickle.loads(data)
        return _DECODERS[tag](self, data)


def _dict_to_plain(codec: DynamicCodec, value: dict[Any, Any]) -> Any:
    # All-str keys (the common case) become a msgpack map; anything else a list of pairs.
    if all(type(k) is str for k in value):
        return {k: codec.to_plain(v) for k, v in value.items()}
    return [[codec.to_plain(k), codec.to_plain(v)] for k, v in value.items()]


def _dict_from_plain(codec: DynamicCodec, plain: Any) -> Any:
    if type(plain) is dict:
        return {k: codec.from_plain(v) for k, v in plain.items()}
    return {codec.from_plain(k): codec.from_plain(v) for k, v in plain}


def _set_to_plain(codec: DynamicCodec, value: Any) -> Any:
    # Sorted by encoded bytes so equal sets give equal bytes whatever their history.
    return sorted((codec.to_plain(v) for v in value), key=msgpack_encoder.encode)


def _items(codec: DynamicCodec, value: Any) -> Any:
    return [codec.to_plain(v) for v in value]


def _via(codec_cls: type[Codec], hint: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Encode and decode one builtin type through its typed codec."""
    typed = codec_cls(hint)
    return (lambda _, v: typed.to_plain(v)), (lambda _, p: typed.from_plain(p))


def _path(cls: type) -> tuple[Callable[..., Any], Callable[..., Any]]:
    return (lambda _, v: str(v)), (lambda _, p: cls(p))


_Entry = tuple[str, Callable[..., Any], Callable[..., Any]]
_TAGGED: dict[type, _Entry] = {
    tuple: ("tuple", _items, lambda c, p: tuple(c.from_plain(x) for x in p)),
    dict: ("dict", _dict_to_plain, _dict_from_plain),
    set: ("set", _set_to_plain, lambda c, p: {c.from_plain(x) for x in p}),
    frozenset: ("frozenset", _set_to_plain, lambda c, p: frozenset(c.from_plain(x) for x in p)),
    bytearray: ("bytearray", lambda _, v: bytes(v), lambda _, p: bytearray(p)),
    complex: ("complex", lambda _, v: [v.real, v.imag], lambda _, p: complex(p[0], p[1])),
    dt.datetime: ("datetime", *_via(DatetimeCodec, dt.datetime)),
    dt.date: ("date", *_via(DateCodec, dt.date)),
    dt.time: ("time", *_via(DatetimeCodec, dt.time)),
    dt.timedelta: ("timedelta", *_via(TimedeltaCodec, dt.timedelta)),
    Decimal: ("decimal", *_via(DecimalCodec, Decimal)),
    uuid.UUID: ("uuid", *_via(UUIDCodec, uuid.UUID)),
}
for _cls in (
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    pathlib.PosixPath,
    pathlib.WindowsPath,
):
    _TAGGED[_cls] = (_cls.__name__, *_path(_cls))
# "int" is not in _TAGGED (small ints are native) but big ints use the tag.
_DECODERS: dict[str, Callable[..., Any]] = {tag: dec for tag, _, dec in _TAGGED.values()}
_DECODERS["int"] = lambda _, p: int(p)


def _typevar_codec(hint: typing.TypeVar) -> Codec:
    """An unbound type variable means Any; a bound or constrained one means that bound."""
    if hint.__bound__ is not None:
        return codec_for(hint.__bound__)
    if hint.__constraints__:
        return codec_for(typing.Union[hint.__constraints__])  # noqa: UP007 - a runtime tuple
    return codec_for(Any)


register(is_dynamic, DynamicCodec)
# Aliases: these hints mean another hint, so they share its codec.
register(lambda h: isinstance(h, typing.TypeVar), _typevar_codec)
register(is_annotated, lambda h: codec_for(typing.get_args(h)[0]))
register(lambda h: isinstance(h, typing.NewType), lambda h: codec_for(h.__supertype__))
set_fallback(PickleCodec)
