"""Codecs for scalar hints: int, float, bool, str, bytes, None, the datetime types,
Decimal, UUID, paths and Enum subclasses.

Scalar codecs are on every task's hot path, so each is a type check and a return.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import uuid
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

import cloudpickle

from heddle._types._base import Codec, NoneType, codec_for, register
from heddle._types.storable import check_int

# msgpack integers are 64-bit (signed or unsigned); anything wider travels as a decimal str.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
PICKLE_PROTOCOL = 5


class IntCodec(Codec):
    """int: bool is rejected (passing a bool as an int is a bug); int subclasses become int."""

    exact_types = (int,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is int:
            if INT_MIN <= value <= INT_MAX:
                return value
            check_int(value, path)
            return str(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return self.to_plain(int(value))
        raise self.mismatch(value, path)

    def from_plain(self, plain: Any) -> Any:
        return int(plain) if type(plain) is str else plain


class FloatCodec(Codec):
    """float: an int is accepted and widened (the one coercion we allow), bool is not."""

    exact_types = (float,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is float:
            return value
        if isinstance(value, float):
            return float(value)
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise self.mismatch(value, path) from None
        raise self.mismatch(value, path)

    def from_plain(self, plain: Any) -> Any:
        return plain


class ExactScalarCodec(Codec):
    """bool, str, bytes and None: msgpack holds them as they are; subclasses become the base."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._type: type = NoneType if hint is None else hint
        self.exact_types = (self._type,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is self._type:
            return value
        # str.__str__ / bytes(...) drop a subclass (e.g. StrEnum) so msgpack sees the base type.
        if self._type is str and isinstance(value, str):
            return str.__str__(value)
        if self._type is bytes and isinstance(value, bytes):
            return bytes(value)
        raise self.mismatch(value, path)

    def from_plain(self, plain: Any) -> Any:
        return plain


def tz_to_plain(tz: dt.tzinfo | None) -> Any:
    """A tzinfo as a plain tree: fixed offsets keep a custom name, zoneinfo keeps its key."""
    if tz is None:
        return None
    if isinstance(tz, dt.timezone):
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        default = dt.timezone(offset).tzname(None)
        micros = (offset.days * 86400 + offset.seconds) * 1_000_000 + offset.microseconds
        return ["offset", micros, None if name == default else name]
    if isinstance(tz, ZoneInfo) and tz.key is not None:
        return ["zone", tz.key]
    return ["pickle", cloudpickle.dumps(tz, protocol=PICKLE_PROTOCOL)]


def tz_from_plain(plain: Any) -> dt.tzinfo | None:
    if plain is None:
        return None
    kind, data = plain[0], plain[1]
    if kind == "offset":
        offset = dt.timedelta(microseconds=data)
        return dt.timezone(offset) if plain[2] is None else dt.timezone(offset, plain[2])
    if kind == "zone":
        return ZoneInfo(data)
    tz: dt.tzinfo = cloudpickle.loads(data)
    return tz


def _is_plain_offset(tz: dt.tzinfo | None) -> bool:
    """True when ISO format keeps the tzinfo exactly: none, or an unnamed fixed offset."""
    if tz is None:
        return True
    if not isinstance(tz, dt.timezone):
        return False
    offset = tz.utcoffset(None)
    # time.fromisoformat drops the microseconds of an offset: such offsets go the long way.
    if offset.microseconds:
        return False
    return tz.tzname(None) == dt.timezone(offset).tzname(None)


class DatetimeCodec(Codec):
    """datetime, and time of day: an ISO string when that is exact, else [naive ISO, fold, tz].

    The list form keeps fold, named offsets and zoneinfo zones, which ISO text drops.
    Subclasses (freezegun, pendulum) are stored as the base class; a datetime is not
    accepted where a date is declared, since it would not come back as a date.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._type: Any = hint  # datetime or time: the same methods, no common base
        self.exact_types = (hint,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._type):
            raise self.mismatch(value, path)
        cls = self._type
        if value.fold == 0 and _is_plain_offset(value.tzinfo):
            return cls.isoformat(value)
        naive = cls.replace(value, tzinfo=None, fold=0)
        return [cls.isoformat(naive), value.fold, tz_to_plain(value.tzinfo)]

    def from_plain(self, plain: Any) -> Any:
        if type(plain) is str:
            return self._type.fromisoformat(plain)
        naive = self._type.fromisoformat(plain[0])
        return naive.replace(fold=plain[1], tzinfo=tz_from_plain(plain[2]))


class DateCodec(Codec):
    exact_types = (dt.date,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            raise self.mismatch(value, path)
        return dt.date.isoformat(value)

    def from_plain(self, plain: Any) -> Any:
        return dt.date.fromisoformat(plain)


class TimedeltaCodec(Codec):
    exact_types = (dt.timedelta,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, dt.timedelta):
            raise self.mismatch(value, path)
        return [value.days, value.seconds, value.microseconds]

    def from_plain(self, plain: Any) -> Any:
        return dt.timedelta(days=plain[0], seconds=plain[1], microseconds=plain[2])


class DecimalCodec(Codec):
    """Decimal as its str form, which keeps sign, exponent, NaN payloads and infinities."""

    exact_types = (Decimal,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, Decimal):
            raise self.mismatch(value, path)
        return str(value)

    def from_plain(self, plain: Any) -> Any:
        return Decimal(plain)


class UUIDCodec(Codec):
    exact_types = (uuid.UUID,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, uuid.UUID):
            raise self.mismatch(value, path)
        return value.bytes

    def from_plain(self, plain: Any) -> Any:
        return uuid.UUID(bytes=plain)


class PathCodec(Codec):
    """Paths as str; a str is not accepted where a Path is declared (no silent coercion).

    Decoding builds the declared class, so a Path passed for a PurePath comes back pure.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._type: type[pathlib.PurePath] = hint
        try:
            concrete: type = type(hint())
        except NotImplementedError:  # WindowsPath on POSIX and the reverse
            concrete = hint
        self.exact_types = (concrete,)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._type):
            raise self.mismatch(value, path)
        return str(value)

    def from_plain(self, plain: Any) -> Any:
        return self._type(plain)


class EnumCodec(Codec):
    """Enum members by value (decoded with `Cls(value)`), so renaming a member is safe."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._type: type[Enum] = hint
        self.exact_types = (hint,)
        # Values can be any type (tuples, say); the dynamic codec keeps them exact.
        self._value = codec_for(Any)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._type):
            raise self.mismatch(value, path)
        return self._value.to_plain(value.value)

    def from_plain(self, plain: Any) -> Any:
        return self._type(self._value.from_plain(plain))


_SCALARS: dict[Any, type[Codec]] = {
    int: IntCodec,
    float: FloatCodec,
    bool: ExactScalarCodec,
    str: ExactScalarCodec,
    bytes: ExactScalarCodec,
    None: ExactScalarCodec,
    NoneType: ExactScalarCodec,
    dt.datetime: DatetimeCodec,
    dt.time: DatetimeCodec,
    dt.date: DateCodec,
    dt.timedelta: TimedeltaCodec,
    Decimal: DecimalCodec,
    uuid.UUID: UUIDCodec,
}


def _is_scalar(hint: Any) -> bool:
    return (hint is None or isinstance(hint, type)) and hint in _SCALARS


def _is_path(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, pathlib.PurePath)


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Enum)


register(_is_scalar, lambda hint: _SCALARS[hint](hint))
register(_is_path, PathCodec)
register(_is_enum, EnumCodec)
