"""Codecs for container and choice hints: list, dict, tuple, set, frozenset, their abstract
collections.abc forms, Optional, Union and Literal.

Element codecs are looked up once, when the container codec is built.
"""

from __future__ import annotations

import collections.abc as abc
import typing
from enum import Enum
from typing import Any

from heddle._errors import TypeMismatchError
from heddle._types._base import (
    Codec,
    NoneType,
    canonical_key,
    codec_for,
    describe,
    is_literal,
    is_union,
    msgpack_encoder,
    nested,
    register,
    type_name,
)


class SequenceCodec(Codec):
    """list[X] (and Sequence[X], MutableSequence[X]): a plain list, decoded as a list.

    The abstract forms accept a list or a tuple and both come back as a list.
    """

    def __init__(self, hint: Any, accepted: tuple[type, ...]) -> None:
        super().__init__(hint)
        args = typing.get_args(hint)
        self._accepted = accepted
        self.exact_types = accepted
        self._item = codec_for(args[0] if args else Any)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._accepted):
            raise self.mismatch(value, path)
        return items_to_plain(self._item, value, path)

    def from_plain(self, plain: Any) -> Any:
        item = self._item.from_plain
        return [item(p) for p in plain]


def items_to_plain(codec: Codec, values: Any, path: str) -> list[Any]:
    """Encode each element, naming the failing index on a mismatch."""
    item = codec.to_plain
    out = []
    for i, v in enumerate(values):
        try:
            out.append(item(v))
        except TypeMismatchError as e:
            raise nested(e, f"{path}[{i}]") from None
    return out


class TupleCodec(Codec):
    """tuple[X, Y] (fixed length), tuple[X, ...] and bare tuple, as a plain list."""

    exact_types = (tuple,)

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        args = typing.get_args(hint)
        self._variadic: Codec | None = None
        self._fixed: list[Codec] = []
        if hint is tuple or hint is typing.Tuple:  # noqa: UP006 - the bare typing alias
            self._variadic = codec_for(Any)
        elif len(args) == 2 and args[1] is Ellipsis:
            self._variadic = codec_for(args[0])
        else:
            self._fixed = [codec_for(a) for a in args]

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, tuple):
            raise self.mismatch(value, path)
        if self._variadic is not None:
            return items_to_plain(self._variadic, value, path)
        if len(value) != len(self._fixed):
            given = f"tuple of length {len(value)}"
            raise TypeMismatchError(type_name(self.hint), given, path)
        out = []
        for i, (codec, v) in enumerate(zip(self._fixed, value, strict=True)):
            try:
                out.append(codec.to_plain(v))
            except TypeMismatchError as e:
                raise nested(e, f"{path}[{i}]") from None
        return out

    def from_plain(self, plain: Any) -> Any:
        if self._variadic is not None:
            item = self._variadic.from_plain
            return tuple(item(p) for p in plain)
        return tuple(c.from_plain(p) for c, p in zip(self._fixed, plain, strict=True))


class SetCodec(Codec):
    """set[X] and frozenset[X]: elements sorted by their encoded bytes.

    Iteration order of a set depends on insertion history and hash seeds; sorting by bytes
    makes equal sets encode to equal bytes, which the runtime hashes into ids.
    """

    def __init__(self, hint: Any, accepted: tuple[type, ...], build: type) -> None:
        super().__init__(hint)
        args = typing.get_args(hint)
        self._accepted: Any = accepted  # Any: isinstance against it must not narrow to object
        self.exact_types = accepted
        self._build = build
        self._item = codec_for(args[0] if args else Any)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._accepted):
            raise self.mismatch(value, path)
        item = self._item.to_plain
        out = []
        for v in value:
            try:
                out.append(item(v))
            except TypeMismatchError as e:
                raise nested(e, f"{path}{{{describe(v)}}}") from None
        out.sort(key=msgpack_encoder.encode)
        return out

    def from_plain(self, plain: Any) -> Any:
        item = self._item.from_plain
        return self._build(item(p) for p in plain)


class DictCodec(Codec):
    """dict[K, V] (and Mapping[K, V]): a msgpack map when keys are str, else [[k, v], ...].

    Insertion order is kept, so the same dict built the same way gives the same bytes.
    """

    def __init__(self, hint: Any, accepted: tuple[type, ...]) -> None:
        super().__init__(hint)
        args = typing.get_args(hint)
        self._accepted: Any = accepted  # Any: isinstance against it must not narrow to object
        self.exact_types = accepted
        self._key = codec_for(args[0] if args else Any)
        self._value = codec_for(args[1] if args else Any)
        self._str_keys = self._key.hint is str

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, self._accepted):
            raise self.mismatch(value, path)
        key, val = self._key.to_plain, self._value.to_plain
        out: Any = {} if self._str_keys else []
        for k, v in value.items():
            try:
                pk = key(k)
            except TypeMismatchError as e:
                raise TypeMismatchError(
                    f"{e.expected} (as a key)", e.given, f"{path}[{describe(k)}]"
                ) from None
            try:
                pv = val(v)
            except TypeMismatchError as e:
                raise nested(e, f"{path}[{k!r}]") from None
            if self._str_keys:
                out[pk] = pv
            else:
                out.append([pk, pv])
        return out

    def from_plain(self, plain: Any) -> Any:
        val = self._value.from_plain
        if self._str_keys:
            return {k: val(v) for k, v in plain.items()}
        key = self._key.from_plain
        return {key(k): val(v) for k, v in plain}


class OptionalCodec(Codec):
    """Optional[X]: None as None, anything else as X's plain form (no index needed)."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        (inner,) = (a for a in typing.get_args(hint) if a is not NoneType)
        self._inner = codec_for(inner)
        self.exact_types = (NoneType, *self._inner.exact_types)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if value is None:
            return None
        try:
            return self._inner.to_plain(value)
        except TypeMismatchError as e:
            if not e.path:  # the value itself is wrong: say what the parameter allows
                raise TypeMismatchError(type_name(self.hint), e.given, path) from None
            raise nested(e, path) from None

    def from_plain(self, plain: Any) -> Any:
        return None if plain is None else self._inner.from_plain(plain)


class UnionCodec(Codec):
    """Union[A, B, ...]: [member index, member's plain form].

    Members whose exact types match the value's type are tried first, then the rest.
    Members are ordered by `canonical_key`, not as written: `int | str` equals `str | int`,
    so either may receive the other's cached codec, and the indexes must agree.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        members = sorted(typing.get_args(hint), key=canonical_key)
        self._members = [codec_for(m) for m in members]
        self._by_type: dict[type, list[int]] = {}
        for i, codec in enumerate(self._members):
            for t in codec.exact_types:
                self._by_type.setdefault(t, []).append(i)
        self.exact_types = tuple(self._by_type)

    def to_plain(self, value: Any, path: str = "") -> Any:
        preferred = self._by_type.get(type(value), [])
        errors = []
        for i in preferred:
            try:
                return [i, self._members[i].to_plain(value)]
            except TypeMismatchError as e:
                errors.append(e)
        for i, codec in enumerate(self._members):
            if i in preferred:
                continue
            try:
                return [i, codec.to_plain(value)]
            except TypeMismatchError:
                pass
        # One member was clearly meant (same type) and failed deep inside: report that spot.
        if len(errors) == 1 and errors[0].path:
            raise nested(errors[0], path)
        raise self.mismatch(value, path)

    def from_plain(self, plain: Any) -> Any:
        return self._members[plain[0]].from_plain(plain[1])


class LiteralCodec(Codec):
    """Literal[...]: the value must be one of the listed ones (type and value both match).

    Stored by value, so reordering or adding options keeps old data readable; enum members
    are stored as {class name: member name} so they cannot collide with a plain 1 or "a".
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._options: list[tuple[Any, Any]] = []
        for option in typing.get_args(hint):
            if isinstance(option, Enum):
                plain: Any = {type(option).__name__: option.name}
            else:
                plain = codec_for(type(option)).to_plain(option)
            self._options.append((option, plain))
        self.exact_types = tuple({type(o) for o, _ in self._options})

    def to_plain(self, value: Any, path: str = "") -> Any:
        for option, plain in self._options:
            if type(value) is type(option) and value == option:
                return plain
        raise self.mismatch(value, path)

    def from_plain(self, plain: Any) -> Any:
        for option, option_plain in self._options:
            if type(plain) is type(option_plain) and plain == option_plain:
                return option
        raise TypeMismatchError(type_name(self.hint), describe(plain), "")


_SEQUENCES: dict[Any, tuple[type, ...]] = {
    list: (list,),
    abc.Sequence: (list, tuple),
    abc.MutableSequence: (list,),
}
_MAPPINGS: dict[Any, tuple[type, ...]] = {
    dict: (dict,),
    abc.Mapping: (abc.Mapping,),
    abc.MutableMapping: (abc.MutableMapping,),
}
_SETS: dict[Any, tuple[tuple[type, ...], type]] = {
    set: ((set,), set),
    frozenset: ((frozenset,), frozenset),
    abc.Set: ((set, frozenset), frozenset),
    abc.MutableSet: ((set,), set),
}


def _origin(hint: Any) -> Any:
    """The container class of `list[int]`, `typing.List[int]` or bare `list`."""
    origin = typing.get_origin(hint)
    if origin is not None:
        return origin
    return hint if isinstance(hint, type) else None


def _in(table: dict[Any, Any]) -> typing.Callable[[Any], bool]:
    return lambda hint: _origin(hint) in table


def _is_optional(hint: Any) -> bool:
    args = typing.get_args(hint)
    return is_union(hint) and len(args) == 2 and NoneType in args


register(_in(_SEQUENCES), lambda h: SequenceCodec(h, _SEQUENCES[_origin(h)]))
register(_in(_MAPPINGS), lambda h: DictCodec(h, _MAPPINGS[_origin(h)]))
register(_in(_SETS), lambda h: SetCodec(h, *_SETS[_origin(h)]))
register(lambda h: _origin(h) is tuple, TupleCodec)
register(lambda h: is_union(h) and not _is_optional(h), UnionCodec)
register(_is_optional, OptionalCodec)
register(is_literal, LiteralCodec)
