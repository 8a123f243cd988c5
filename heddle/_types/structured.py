"""Codecs for classes with named, typed fields: dataclasses, NamedTuple, TypedDict and
pydantic models.

Field hints are resolved once, on first use, so self-referencing classes work.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable
from typing import Any

from heddle._errors import HeddleError, TypeMismatchError
from heddle._types._base import Codec, codec_for, describe, nested, register, type_name

FieldCodecs = list[tuple[str, Callable[..., Any], Callable[[Any], Any]]]


def resolve_hints(cls: Any, include_extras: bool = False) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, with an error that says which class failed and why."""
    try:
        return typing.get_type_hints(cls, include_extras=include_extras)
    except NameError as exc:
        raise HeddleError(
            f"cannot resolve the field types of {type_name(cls)}: {exc}; define the class "
            "at module level or import the names its annotations use"
        ) from exc


def substitute(hint: Any, mapping: dict[Any, Any]) -> Any:
    """Replace type variables in `hint` (a field of a generic class) by the given arguments."""
    if isinstance(hint, typing.TypeVar):
        return mapping.get(hint, hint)
    params = getattr(hint, "__parameters__", ())
    if params and not isinstance(hint, type):
        return hint[tuple(mapping.get(p, p) for p in params)]
    return hint


def _wrong_class(codec: Codec, value: Any, path: str) -> TypeMismatchError:
    """Subclass instances are refused: decoding would silently rebuild the declared class."""
    if isinstance(value, codec.exact_types):
        given = f"{type(value).__name__} (a subclass; declare the subclass or a Union)"
        return TypeMismatchError(type_name(codec.hint), given, path)
    return codec.mismatch(value, path)


class DataclassCodec(Codec):
    """Dataclasses (frozen, slotted, generic) as {field name: plain}, all fields included.

    Decoding calls the constructor with the init fields, so defaults fill fields missing
    from older data and __post_init__ runs, then sets init=False fields directly.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._cls: type = typing.get_origin(hint) or hint
        self.exact_types = (self._cls,)
        self._fields: FieldCodecs | None = None
        self._init_fields: FieldCodecs = []
        self._later_fields: FieldCodecs = []

    def _resolve(self) -> FieldCodecs:
        hints = resolve_hints(self._cls)
        params = getattr(self._cls, "__parameters__", ())
        mapping = dict(zip(params, typing.get_args(self.hint), strict=False))
        fields: FieldCodecs = []
        for f in dataclasses.fields(self._cls):
            codec = codec_for(substitute(hints.get(f.name, Any), mapping))
            fields.append((f.name, codec.to_plain, codec.from_plain))
        by_name = {f.name: f for f in dataclasses.fields(self._cls)}
        self._init_fields = [f for f in fields if by_name[f[0]].init]
        self._later_fields = [f for f in fields if not by_name[f[0]].init]
        self._fields = fields
        return fields

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is not self._cls:
            raise _wrong_class(self, value, path)
        fields = self._fields if self._fields is not None else self._resolve()
        out = {}
        for name, to_plain, _ in fields:
            try:
                out[name] = to_plain(getattr(value, name))
            except TypeMismatchError as e:
                raise nested(e, f"{path}.{name}") from None
        return out

    def from_plain(self, plain: Any) -> Any:
        if self._fields is None:
            self._resolve()
        # Keys missing from older data are left to the field defaults.
        kwargs = {name: f(plain[name]) for name, _, f in self._init_fields if name in plain}
        obj = self._cls(**kwargs)
        for name, _, f in self._later_fields:
            if name in plain:
                object.__setattr__(obj, name, f(plain[name]))  # works when frozen too
        return obj


class NamedTupleCodec(Codec):
    """typing.NamedTuple (and collections.namedtuple, whose fields are Any) as a plain list."""

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (hint,)
        self._fields: FieldCodecs | None = None

    def _resolve(self) -> FieldCodecs:
        hints = resolve_hints(self.hint)
        fields: FieldCodecs = []
        for name in self.hint._fields:
            codec = codec_for(hints.get(name, Any))
            fields.append((name, codec.to_plain, codec.from_plain))
        self._fields = fields
        return fields

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is not self.hint:
            raise _wrong_class(self, value, path)
        fields = self._fields if self._fields is not None else self._resolve()
        out = []
        for (name, to_plain, _), v in zip(fields, value, strict=True):
            try:
                out.append(to_plain(v))
            except TypeMismatchError as e:
                raise nested(e, f"{path}.{name}") from None
        return out

    def from_plain(self, plain: Any) -> Any:
        fields = self._fields if self._fields is not None else self._resolve()
        return self.hint(*(f(p) for (_, _, f), p in zip(fields, plain, strict=True)))


class TypedDictCodec(Codec):
    """TypedDict as a msgpack map in declaration order; required keys must be present and
    unknown keys are refused."""

    exact_types = (dict,)

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self._fields: FieldCodecs | None = None
        self._decoders: dict[str, Callable[[Any], Any]] = {}
        self._required: frozenset[str] = hint.__required_keys__

    def _resolve(self) -> FieldCodecs:
        # Required/NotRequired written as strings (`from __future__ import annotations`)
        # are invisible when the class is created, so __required_keys__ misses them.
        with_extras = resolve_hints(self.hint, include_extras=True)
        required = set(self._required)
        for name, hint in with_extras.items():
            origin: Any = typing.get_origin(hint)
            if origin is typing.NotRequired:
                required.discard(name)
            elif origin is typing.Required:
                required.add(name)
        self._required = frozenset(required)
        fields: FieldCodecs = []
        for name, hint in resolve_hints(self.hint).items():
            codec = codec_for(hint)
            fields.append((name, codec.to_plain, codec.from_plain))
        self._decoders = {name: f for name, _, f in fields}
        self._fields = fields
        return fields

    def to_plain(self, value: Any, path: str = "") -> Any:
        if not isinstance(value, dict):
            raise self.mismatch(value, path)
        fields = self._fields if self._fields is not None else self._resolve()
        out = {}
        for name, to_plain, _ in fields:
            if name not in value:
                if name in self._required:
                    given = f"dict without key {name!r}"
                    raise TypeMismatchError(type_name(self.hint), given, path)
                continue
            try:
                out[name] = to_plain(value[name])
            except TypeMismatchError as e:
                raise nested(e, f"{path}[{name!r}]") from None
        if len(out) != len(value):
            extra = next(k for k in value if k not in out)
            given = f"dict with unexpected key {describe(extra)}"
            raise TypeMismatchError(type_name(self.hint), given, path)
        return out

    def from_plain(self, plain: Any) -> Any:
        if self._fields is None:
            self._resolve()
        decoders = self._decoders
        return {k: decoders[k](v) for k, v in plain.items()}


class PydanticCodec(Codec):
    """pydantic models: `model_dump(mode="python", round_trip=True)` through the dynamic
    codec, and `model_validate` to decode.

    Python mode keeps bytes, tuples, sets and datetimes exact where JSON mode would turn
    them into text. Only instances of the model are accepted: a dict passed for a model
    parameter is refused rather than validated, like any other silent coercion.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (hint,)
        self._dynamic = codec_for(Any)

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is not self.hint:
            raise _wrong_class(self, value, path)
        # Serializer warnings off: the check below reports a bad field with its place.
        dump = value.model_dump(mode="python", round_trip=True, warnings=False)
        self._check_valid(value, dump, path)
        to_plain = self._dynamic.to_plain
        return {k: to_plain(v) for k, v in dump.items()}

    def _check_valid(self, value: Any, dump: dict[str, Any], path: str) -> None:
        """Refuse a model that would not validate when decoded (``model_construct`` skips
        validation), so it fails at the call instead of in the task that receives it."""
        import pydantic

        try:
            self.hint.model_validate(dump)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            given = f"{describe(first.get('input'))} ({first['msg']})"
            raise TypeMismatchError(f"a valid {type_name(self.hint)}", given, path + loc) from None

    def from_plain(self, plain: Any) -> Any:
        from_plain = self._dynamic.from_plain
        return self.hint.model_validate({k: from_plain(v) for k, v in plain.items()})


def _is_dataclass(hint: Any) -> bool:
    cls = typing.get_origin(hint) or hint
    return isinstance(cls, type) and dataclasses.is_dataclass(cls)


def _is_namedtuple(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields")


def _is_pydantic_model(hint: Any) -> bool:
    # Importing pydantic costs ~100 ms; if nobody has, no hint can be one of its models.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(hint, type) and issubclass(hint, pydantic.BaseModel)


register(_is_dataclass, DataclassCodec)
register(_is_namedtuple, NamedTupleCodec)
register(typing.is_typeddict, TypedDictCodec)
register(_is_pydantic_model, PydanticCodec)
