"""Typed call signatures: bind arguments and encode inputs and outputs by type hints.

Shared by tasks and traces so both validate and record values the same way.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from heddle import _types
from heddle._errors import ConfigError, InputError, TypeMismatchError
from heddle._types.storable import LOW_LEVEL_ERRORS, explain
from heddle._types.structured import PINNED_HINTS, is_unresolved, pin_hints
from heddle._types.validation import DataValidationError

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def resolve_call_hints(fn: Callable[..., Any], owner: str) -> dict[str, Any]:
    """The type hints of a task or trace function, resolved where it is defined.

    Annotations written as strings (``from __future__ import annotations``) are
    resolved against the function's module now, and kept on the function together with
    the field hints of the classes they reach: a task of a script travels to worker
    processes pickled by value, without the script's module to resolve names against.
    """
    pinned = getattr(fn, PINNED_HINTS, None)
    if isinstance(pinned, dict):
        return pinned
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise ConfigError(
            f"cannot resolve the type hints of {owner!r}: {exc}; define or import the "
            "classes its annotations name at module level, before the task is defined"
        ) from exc
    except Exception as exc:
        raise ConfigError(f"cannot resolve the type hints of {owner!r}: {exc}") from exc
    pin_hints(hints.values())
    if any(is_unresolved(h) for h in getattr(fn, "__annotations__", {}).values()):
        with contextlib.suppress(AttributeError, TypeError):  # a callable without __dict__
            setattr(fn, PINNED_HINTS, hints)
    return hints


class CallCodec:
    """Binds and converts the inputs and output of one function."""

    def __init__(self, fn: Callable[..., Any], owner: str) -> None:
        self.owner = owner
        self.signature = inspect.signature(fn)
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ConfigError(
                    f"{owner!r}: *args/**kwargs parameters are not supported "
                    f"(parameter {p.name!r}); declare each input with a type hint"
                )
        hints = resolve_call_hints(fn, owner)
        self.param_names = tuple(self.signature.parameters)
        self._codecs = tuple(
            _types.codec_for(hints.get(n, inspect.Parameter.empty)) for n in self.param_names
        )
        self._out_codec = _types.codec_for(hints.get("return", inspect.Parameter.empty))
        # Calls with exactly one positional value per parameter (the common case, and
        # every heddle.map child) skip inspect's general binding.
        self._plain_positional = all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            for p in self.signature.parameters.values()
        )
        self._arity = len(self.param_names)
        self._pairs = tuple(zip(self.param_names, self._codecs, strict=True))

    @property
    def output_codec(self) -> _types.Codec:
        """The codec of the return value (what the runtime walks for blob references)."""
        return self._out_codec

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Match call arguments to parameters, with defaults; InputError if they don't fit."""
        if not kwargs and len(args) == self._arity and self._plain_positional:
            return dict(zip(self.param_names, args, strict=True))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InputError(self.owner, str(exc)) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def encode_inputs(self, inputs: Mapping[str, Any]) -> bytes:
        plains = []
        for name, codec in self._pairs:
            try:
                value = inputs[name]
            except KeyError:
                raise InputError(self.owner, "missing a value", name) from None
            try:
                plains.append(codec.to_plain(value))
            except TypeMismatchError as exc:
                raise self._input_error(name, exc) from exc
            except LOW_LEVEL_ERRORS as exc:
                raise self._input_error(name, explain(value, exc)) from None
        if len(inputs) != self._arity:
            unknown = sorted(set(inputs) - set(self.param_names))
            raise InputError(self.owner, f"unknown parameters {unknown}")
        try:
            return _ENCODER.encode(plains)
        except LOW_LEVEL_ERRORS as exc:
            # Rare: find the parameter by encoding each alone, then explain its value.
            for (name, _), plain in zip(self._pairs, plains, strict=True):
                try:
                    _ENCODER.encode(plain)
                except LOW_LEVEL_ERRORS:
                    raise self._input_error(name, explain(inputs[name], exc)) from None
            raise

    def _input_error(self, name: str, exc: TypeMismatchError) -> InputError:
        where = f" at {exc.path}" if exc.path else ""
        # Chained by the caller, so a DataValidationError's checks stay reachable.
        return InputError(self.owner, f"expected {exc.expected}, got {exc.given}{where}", name)

    def decode_inputs(self, data: bytes) -> dict[str, Any]:
        plains = _DECODER.decode(data)
        return {
            name: codec.from_plain(p) for (name, codec), p in zip(self._pairs, plains, strict=True)
        }

    def encode_output(self, value: Any) -> bytes:
        try:
            return _ENCODER.encode(self._out_codec.to_plain(value))
        except LOW_LEVEL_ERRORS as exc:
            error = explain(value, exc)
            raise TypeMismatchError(
                error.expected, error.given, f"the return value of {self.owner!r}{error.path}"
            ) from None
        except DataValidationError as exc:
            raise DataValidationError(
                exc.schema, exc.checks, f"the return value of {self.owner!r}{exc.path}"
            ) from None
        except TypeMismatchError as exc:
            raise TypeMismatchError(
                exc.expected, exc.given, f"the return value of {self.owner!r}{exc.path}"
            ) from None

    def decode_output(self, data: bytes) -> Any:
        return self._out_codec.from_plain(_DECODER.decode(data))
