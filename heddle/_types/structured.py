"""Codecs for classes with named, typed fields: dataclasses, NamedTuple, TypedDict and
pydantic models.

Field hints are resolved once, on first use, so self-referencing classes work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Any

from heddle._errors import HeddleError, TypeMismatchError
from heddle._types._base import (
    Codec,
    codec_for,
    describe,
    is_annotated,
    is_literal,
    nested,
    register,
    type_name,
)

FieldCodecs = list[tuple[str, Callable[..., Any], Callable[[Any], Any]]]


# Where pin_hints keeps a class's resolved field hints, (without extras, with extras), and
# resolve_call_hints a function's.
PINNED_HINTS = "__heddle_hints__"


def resolve_hints(cls: Any, include_extras: bool = False) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, with an error that says which class failed and why."""
    pinned = vars(cls).get(PINNED_HINTS)
    if pinned is not None:
        return dict(pinned[include_extras])
    try:
        return typing.get_type_hints(cls, include_extras=include_extras)
    except NameError as exc:
        raise HeddleError(
            f"cannot resolve the field types of {type_name(cls)}: {exc}; define the class "
            "at module level or import the names its annotations use"
        ) from exc


def pin_hints(hints: Iterable[Any]) -> None:
    """Resolve the field hints of every class reachable from ``hints`` now, and keep them
    on the class.

    With ``from __future__ import annotations`` field hints are strings, resolved against
    the globals of the class's module. A class of a script (``__main__``) travels to a
    worker process pickled by value, where that module is not the script: the names
    cannot be resolved there, so they are resolved here, where they can, and the result
    travels with the class. Classes whose hints cannot be resolved are left alone (their
    codec says why when it is used).
    """
    seen: set[int] = set()
    stack = list(hints)
    while stack:
        hint = stack.pop()
        if id(hint) in seen:
            continue
        seen.add(id(hint))
        if isinstance(hint, list | tuple):  # Callable's parameter list
            stack.extend(hint)
            continue
        stack.extend(_hint_args(hint))
        cls: Any = typing.get_origin(hint) or hint
        if not isinstance(cls, type):
            continue
        if _is_pydantic_model(cls):
            # pydantic resolved its fields when the class was made; they travel with it.
            stack.extend(f.annotation for f in typing.cast(Any, cls).model_fields.values())
        elif _is_dataclass(cls) or _is_namedtuple(cls) or typing.is_typeddict(cls):
            try:
                plain = typing.get_type_hints(cls)
                extras = typing.get_type_hints(cls, include_extras=True)
            except Exception:  # NameError, or a hint typing cannot evaluate
                continue
            if _has_unresolved_annotations(cls):
                with contextlib.suppress(TypeError, AttributeError):  # an immutable class
                    setattr(cls, PINNED_HINTS, (plain, extras))
            stack.extend(extras.values())


def _has_unresolved_annotations(cls: type) -> bool:
    """True if the class (or a base) has annotations written as strings or forward refs."""
    return any(
        is_unresolved(hint)
        for base in cls.__mro__
        for hint in vars(base).get("__annotations__", {}).values()
    )


def is_unresolved(hint: Any) -> bool:
    """True for a hint that is (or holds) a string or forward reference."""
    if isinstance(hint, str | typing.ForwardRef):
        return True
    if isinstance(hint, list | tuple):
        return any(is_unresolved(h) for h in hint)
    return any(is_unresolved(a) for a in _hint_args(hint))


def _hint_args(hint: Any) -> tuple[Any, ...]:
    """The hints inside a hint: not Literal's values, nor Annotated's metadata."""
    if is_literal(hint):
        return ()
    args = typing.get_args(hint)
    return args[:1] if is_annotated(hint) else args


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


# Marks the typed form of a model's plain (a pydantic field name cannot start with "_");
# a plain without it was stored by an earlier version as the model's dump.
_TYPED = "__v"
_EXTRA = "__extra"


class PydanticCodec(Codec):
    """pydantic models as {field name: plain}, each field encoded by its own annotation
    (enums, nested models, dataclasses, frames, files: all natively), and decoded with
    ``model_validate``.

    Fields annotated with Any (or a type no codec knows) go through the model's
    python-mode dump and the dynamic codec, which keeps bytes, tuples, sets and
    datetimes exact. Only instances of the model are accepted: a dict passed for a model
    parameter is refused rather than validated, like any other silent coercion.
    """

    def __init__(self, hint: Any) -> None:
        super().__init__(hint)
        self.exact_types = (hint,)
        self._dynamic = codec_for(Any)
        self._typed: FieldCodecs | None = None
        self._dumped: set[str] = set()

    def _resolve(self) -> FieldCodecs:
        from heddle._types.dynamic import DynamicCodec, PickleCodec

        typed: FieldCodecs = []
        for name, info in self.hint.model_fields.items():
            # pydantic has resolved the annotation (string annotations included).
            codec = codec_for(Any if info.annotation is None else info.annotation)
            if isinstance(codec, DynamicCodec | PickleCodec):
                self._dumped.add(name)
            else:
                typed.append((name, codec.to_plain, codec.from_plain))
        self._typed = typed
        return typed

    def to_plain(self, value: Any, path: str = "") -> Any:
        if type(value) is not self.hint:
            raise _wrong_class(self, value, path)
        typed = self._typed if self._typed is not None else self._resolve()
        out: dict[str, Any] = {_TYPED: 1}
        for name, to_plain, _ in typed:
            try:
                out[name] = to_plain(getattr(value, name))
            except TypeMismatchError as e:
                raise nested(e, f"{path}.{name}") from None
        dynamic = self._dynamic.to_plain
        if self._dumped:
            if getattr(self.hint, "__pydantic_root_model__", False):
                dump = {"root": value.model_dump(mode="python", round_trip=True)}
            else:
                dump = value.model_dump(mode="python", round_trip=True, include=self._dumped)
            out.update((k, dynamic(v)) for k, v in dump.items())
        extra = value.__pydantic_extra__
        if extra:
            out[_EXTRA] = {k: dynamic(v) for k, v in extra.items()}
        return out

    def from_plain(self, plain: Any) -> Any:
        from_dynamic = self._dynamic.from_plain
        if _TYPED not in plain:
            return _validate(self.hint, {k: from_dynamic(v) for k, v in plain.items()})
        typed = self._typed if self._typed is not None else self._resolve()
        data = {name: f(plain[name]) for name, _, f in typed if name in plain}
        data.update((k, from_dynamic(plain[k])) for k in self._dumped if k in plain)
        data.update((k, from_dynamic(v)) for k, v in plain.get(_EXTRA, {}).items())
        if getattr(self.hint, "__pydantic_root_model__", False):
            return self.hint.model_validate(data["root"])  # RootModel: validated bare
        return _validate(self.hint, data)


def _validate(model: Any, data: dict[str, Any]) -> Any:
    """``model_validate`` of values keyed by field name, also for fields with an alias."""
    if _validates_by_name():
        return model.model_validate(data, by_name=True)
    # pydantic < 2.11 validates by alias only (unless populate_by_name is set).
    fields = model.model_fields
    return model.model_validate(
        {
            (fields[k].alias or k) if k in fields and isinstance(fields[k].alias, str) else k: v
            for k, v in data.items()
        }
    )


@functools.cache
def _validates_by_name() -> bool:
    import pydantic  # imported already: a model is being decoded

    return "by_name" in inspect.signature(pydantic.BaseModel.model_validate).parameters


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
