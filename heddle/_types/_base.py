"""The Codec base class, the registry that picks a codec for a type hint, and readable names.

Family modules (builtins, containers, structured, dynamic) register their codecs here;
`codec_for` asks the registry once per hint and caches the answer.
"""

from __future__ import annotations

import inspect
import reprlib
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum
from typing import Any

import msgspec

from heddle._errors import HeddleError, TypeMismatchError

Predicate = Callable[[Any], bool]
Factory = Callable[[Any], "Codec"]

# One encoder/decoder pair for the whole process: building them per call costs more than
# encoding a small value.
msgpack_encoder = msgspec.msgpack.Encoder()
msgpack_decoder = msgspec.msgpack.Decoder()

NoneType = type(None)


class Codec(ABC):
    """Validates values of one type hint and converts them to and from a msgpack-able tree.

    The tree holds only None, bool, int (64-bit), float, str, bytes, list and dicts with
    str keys. `to_plain` raises TypeMismatchError for a value that does not fit the hint;
    `from_plain` trusts its input, since it was produced by `to_plain`.
    """

    hint: Any
    # Runtime types this codec takes as they are; unions try these members first, so
    # `float | int` keeps an int an int instead of widening it to float.
    exact_types: tuple[type, ...] = ()

    def __init__(self, hint: Any) -> None:
        self.hint = hint

    @abstractmethod
    def to_plain(self, value: Any, path: str = "") -> Any:
        """Validate `value` against the hint and convert it to a plain tree."""

    @abstractmethod
    def from_plain(self, plain: Any) -> Any:
        """Rebuild the value that `to_plain` turned into `plain`."""

    def mismatch(self, value: Any, path: str) -> TypeMismatchError:
        """The error for a value that does not fit this codec's hint."""
        return TypeMismatchError(type_name(self.hint), describe(value), path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type_name(self.hint)})"


def nested(error: TypeMismatchError, prefix: str) -> TypeMismatchError:
    """Re-raise an element's mismatch with the element's location in front of its path.

    Children are encoded with an empty path and only an error pays for building the
    location string, which keeps the happy path free of string formatting.
    """
    return TypeMismatchError(error.expected, error.given, prefix + error.path)


_registry: list[tuple[Predicate, Factory]] = []
_fallback: list[Factory] = []
_cache: dict[Any, Codec] = {}


def register(predicate: Predicate, factory: Factory) -> None:
    """Add a codec family: `factory(hint)` builds the codec for hints where `predicate(hint)`.

    Later registrations take precedence, so a plugin (numpy, pandas, File) can claim hints
    that would otherwise fall through to the pickle fallback, or override a built-in codec.
    """
    _registry.insert(0, (predicate, factory))
    _cache.clear()


def set_fallback(factory: Factory) -> None:
    """Set the codec used for hints no registered predicate claims."""
    _fallback[:] = [factory]
    _cache.clear()


def codec_for(hint: Any) -> Codec:
    """The codec for `hint`, built once per (hashable) hint and then cached."""
    try:
        return _cache[hint]
    except KeyError:
        pass
    except TypeError:  # unhashable hint, e.g. Annotated with a list in its metadata
        return _build(hint)
    # setdefault: two threads racing to build the same codec agree on one instance.
    return _cache.setdefault(hint, _build(hint))


def _build(hint: Any) -> Codec:
    if isinstance(hint, str | typing.ForwardRef):
        raise HeddleError(
            f"unresolved forward reference {type_name(hint)!r}: resolve annotations "
            "with typing.get_type_hints() before asking for a codec"
        )
    for predicate, factory in _registry:
        if predicate(hint):
            return factory(hint)
    if not _fallback:
        raise HeddleError("heddle._types was imported partially: no fallback codec is set")
    return _fallback[0](hint)


def encode(value: Any, hint: Any) -> bytes:
    """Validate `value` against `hint` and serialize it to msgpack bytes."""
    try:
        codec = _cache[hint]
    except (KeyError, TypeError):
        codec = codec_for(hint)
    return msgpack_encoder.encode(codec.to_plain(value))


def decode(data: bytes, hint: Any) -> Any:
    """Rebuild the value that `encode(value, hint)` produced."""
    try:
        codec = _cache[hint]
    except (KeyError, TypeError):
        codec = codec_for(hint)
    return codec.from_plain(msgpack_decoder.decode(data))


def is_union(hint: Any) -> bool:
    """True for `Union[A, B]`, `Optional[A]` and `A | B`."""
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def is_literal(hint: Any) -> bool:
    """True for `Literal[...]`."""
    origin: Any = typing.get_origin(hint)
    return origin is typing.Literal


def is_annotated(hint: Any) -> bool:
    """True for `Annotated[X, ...]`."""
    origin: Any = typing.get_origin(hint)
    return origin is typing.Annotated


def is_dynamic(hint: Any) -> bool:
    """True for hints that say nothing about the value: Any, object, or no annotation."""
    return hint is Any or hint is object or hint is inspect.Parameter.empty


def type_name(hint: Any) -> str:
    """A readable name for a hint, for error messages: "list[int]", "Optional[str]"."""
    if hint is None or hint is NoneType:
        return "None"
    if is_dynamic(hint):
        return "Any"
    if hint is Ellipsis:
        return "..."
    if isinstance(hint, str):
        return hint
    if isinstance(hint, typing.ForwardRef):
        return hint.__forward_arg__
    if isinstance(hint, list):  # the parameter list of Callable[[int], str]
        return "[" + ", ".join(type_name(h) for h in hint) + "]"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if is_union(hint):
        if len(args) == 2 and NoneType in args:
            (inner,) = (a for a in args if a is not NoneType)
            return f"Optional[{type_name(inner)}]"
        return " | ".join(type_name(a) for a in args)
    if is_literal(hint):
        return "Literal[" + ", ".join(_literal_repr(a) for a in args) + "]"
    if is_annotated(hint):
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", None) or repr(origin)
        if not args:
            return f"{name}[()]" if origin is tuple else name
        return f"{name}[{', '.join(type_name(a) for a in args)}]"
    name = getattr(hint, "__name__", None)
    return name if isinstance(name, str) else repr(hint)


def _literal_repr(value: Any) -> str:
    if isinstance(value, Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def canonical_key(hint: Any) -> str:
    """A string that is equal for equal hints, whatever order their unions were written in.

    `int | str == str | int` in Python (and both hash alike), so the cache may hand either
    hint the codec built for the other. Union codecs order their members by this key so
    the encoding depends only on the set of members, never on which was cached first.
    """
    if is_union(hint) or is_literal(hint):
        inner = sorted(canonical_key(a) for a in typing.get_args(hint))
        kind = "Literal" if is_literal(hint) else "Union"
        return f"{kind}[{', '.join(inner)}]"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is not None:
        return f"{canonical_key(origin)}[{', '.join(canonical_key(a) for a in args)}]"
    if isinstance(hint, type):
        return f"{hint.__module__}.{hint.__qualname__}"
    if isinstance(hint, list):
        return "[" + ", ".join(canonical_key(h) for h in hint) + "]"
    return repr(hint)


_short = reprlib.Repr()
_short.maxstring = 30
_short.maxother = 30
_short.maxlong = 30
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxfrozenset = 4
_short.maxdict = _short.maxdeque = _short.maxarray = 4
_short.maxlevel = 2

_GIVEN_LIMIT = 40


def describe(value: Any) -> str:
    """The type and a short repr of a value, for error messages: "str 'abc'"."""
    if value is None:
        return "None"
    try:
        shown = _short.repr(value)
    except Exception:  # a broken __repr__ must not hide the mismatch being reported
        shown = "<unprintable>"
    text = f"{type(value).__name__} {shown}"
    return text if len(text) <= _GIVEN_LIMIT else text[: _GIVEN_LIMIT - 3] + "..."
