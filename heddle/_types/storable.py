"""What makes a value that fits its type hint impossible to store, and where in it.

Encoding checks no depth and no Unicode on its hot path; when it fails with a low-level
error (RecursionError, UnicodeEncodeError), ``explain`` walks the value without recursion
and names the culprit: a value that contains itself, nesting too deep for Python, or text
with a lone surrogate. Ints past Python's int/str conversion limit are refused by the
codecs themselves (``check_int``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from heddle._errors import TypeMismatchError
from heddle._types._base import describe

# Python refuses to turn ints of more digits than this into text (and back) by default
# (sys.get_int_max_str_digits); a worker with the default must be able to read the value.
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS
# A walk gives up past this depth: the value is too deep whatever the exact number.
_WALK_LIMIT = 100_000

LOW_LEVEL_ERRORS = (RecursionError, UnicodeEncodeError)


def check_int(value: int, path: str) -> None:
    """Refuse an int whose decimal text is longer than Python converts by default.

    Called only for ints outside msgpack's 64-bit range, which travel as text."""
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise TypeMismatchError(
            f"int of at most {MAX_INT_DIGITS} digits",
            f"int of about {int(value.bit_length() * 0.30103) + 1} digits",
            path,
        )


def explain(value: Any, exc: BaseException, path: str = "") -> TypeMismatchError:
    """The mismatch to report for ``value``, whose encoding failed with ``exc``."""
    if isinstance(exc, RecursionError):
        found = _find_cycle_or_depth(value)
        if found is not None:
            return _prefixed(found, path)
    elif isinstance(exc, UnicodeEncodeError):
        found = _find_bad_text(value)
        if found is not None:
            return _prefixed(found, path)
    return TypeMismatchError(
        "a value Heddle can store", f"{describe(value)} ({type(exc).__name__}: {exc})", path
    )


def _prefixed(error: TypeMismatchError, prefix: str) -> TypeMismatchError:
    return TypeMismatchError(error.expected, error.given, prefix + error.path)


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    """The parts of a value that codecs encode, each with its place in the value."""
    cls = type(value)
    if cls is str or cls is bytes or value is None or isinstance(value, int | float):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield f"[{k!r:.60}] (a key)", k
            yield f"[{k!r}]", v
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        for name, v in zip(value._fields, value, strict=False):
            yield f".{name}", v
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield f"[{i}]", v
    elif isinstance(value, set | frozenset):
        for v in value:
            yield f"{{{describe(v)}}}", v
    elif isinstance(value, Enum):
        yield ".value", value.value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield f".{f.name}", getattr(value, f.name, None)
    elif _is_pydantic_model(value):
        for name in type(value).model_fields:
            yield f".{name}", getattr(value, name, None)


def _is_pydantic_model(value: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _find_cycle_or_depth(value: Any) -> TypeMismatchError | None:
    """A value that contains itself (where), or how deep the value nests (depth first)."""
    on_path: dict[int, str] = {id(value): ""}
    stack: list[tuple[Any, str, Iterator[tuple[str, Any]]]] = [(value, "", _children(value))]
    deepest = (1, "")
    while stack:
        _, path, children = stack[-1]
        step = next(children, None)
        if step is None:
            node = stack.pop()[0]
            on_path.pop(id(node), None)
            continue
        where, child = step
        child_path = path + where
        if id(child) in on_path and not _is_atom(child):
            return TypeMismatchError(
                "a value that does not contain itself",
                f"{type(child).__name__} that contains itself",
                child_path,
            )
        if len(stack) + 1 > deepest[0]:
            deepest = (len(stack) + 1, child_path)
        if len(stack) >= _WALK_LIMIT:
            break
        on_path[id(child)] = child_path
        stack.append((child, child_path, _children(child)))
    depth, _ = deepest
    if depth < 50:
        return None  # not deep: the recursion came from somewhere else
    more = "more than " if depth >= _WALK_LIMIT else ""
    return TypeMismatchError(
        "a value nested a few hundred levels deep at most",
        f"{type(value).__name__} nested {more}{depth} levels deep",
        "",
    )


def _is_atom(value: Any) -> bool:
    # Interned scalars (small ints, short strings) are shared without forming a cycle.
    return isinstance(value, str | bytes | int | float) or value is None


def _find_bad_text(value: Any) -> TypeMismatchError | None:
    """The first text in the value (depth first) that is not valid Unicode."""
    stack: list[tuple[Any, str]] = [(value, "")]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            position = _surrogate_at(node)
            if position is not None:
                return TypeMismatchError(
                    "text without lone surrogates (valid Unicode)",
                    f"str with a lone surrogate {node[position]!r} at position {position}",
                    path,
                )
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(reversed([(child, path + where) for where, child in _children(node)]))
    return None


def _surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be a name in the store (None if it can): PostgreSQL refuses
    NUL characters and no database takes lone surrogates."""
    if "\x00" in text:
        return f"contains a NUL character at position {text.index(chr(0))}"
    position = _surrogate_at(text)
    if position is not None:
        return f"contains a lone surrogate {text[position]!r} at position {position}"
    return None
