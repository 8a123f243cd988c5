"""Code fingerprints: a hash of the user's own code a function uses besides its own body.

A task's version hashes its own source. Its cached outputs also depend on the plain
functions, classes and simple constants it reaches by name — transitively, through
globals, closures and attributes of the user's modules. Code from installed packages,
the standard library and Heddle is left out (pin those by version), and so are tasks and
traces (they are checked as dependencies, with versions of their own).

Computed lazily once per function per process; later calls only check that every name it
read still holds the same object, so a notebook that redefines a helper is seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import os
import site
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_MISSING = object()

# A place a name was read from (a namespace dict or a closure cell), the name, and the
# object it held: the fingerprint stays valid while each place still holds that object.
_Watch = tuple[Any, str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Print:
    digest: str
    watched: tuple[_Watch, ...]


_prints: weakref.WeakKeyDictionary[Callable[..., Any], _Print] = weakref.WeakKeyDictionary()


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """A hash of ``fn``'s defaults and of the user code it uses (not of its own body)."""
    try:
        known = _prints.get(fn)
    except TypeError:  # not weak-referenceable: no memo
        known = None
    if known is not None and all(_holds(place, name, obj) for place, name, obj in known.watched):
        return known.digest
    walk = _Walk()
    walk.function_parts(_unwrap(fn), top=True)
    made = _Print(walk.digest(), tuple(walk.watched))
    with contextlib.suppress(TypeError):
        _prints[fn] = made
    return made.digest


def _holds(place: Any, name: str, obj: Any) -> bool:
    if isinstance(place, dict):
        return place.get(name, _MISSING) is obj
    try:
        return bool(place.cell_contents is obj)
    except ValueError:  # an empty cell
        return False


class _Walk:
    """One walk over the code a function reaches, hashing what belongs to the user."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=12)
        self._seen: set[int] = set()
        self.watched: list[_Watch] = []

    def digest(self) -> str:
        return self._hash.hexdigest()

    def _put(self, *parts: str | bytes) -> None:
        for part in parts:
            self._hash.update(part.encode() if isinstance(part, str) else part)
            self._hash.update(b"\x1f")

    # -- functions ---------------------------------------------------------------------

    def function_parts(self, fn: Any, top: bool = False) -> None:
        """Hash a function: its defaults, its code (unless ``top``: a task's body is in
        its version), and whatever user code it names."""
        if not isinstance(fn, types.FunctionType) or id(fn) in self._seen:
            return
        self._seen.add(id(fn))
        self._put("fn", fn.__qualname__, stable(fn.__defaults__), stable(fn.__kwdefaults__))
        if not top:
            self._put(code_digest(fn.__code__))
        names = _names_of(fn.__code__)
        for name in sorted(names):  # sorted: set order differs between processes
            self._global(fn.__globals__, name, names)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self._value(cell, name, value, names)

    def _global(self, namespace: dict[str, Any], name: str, names: frozenset[str]) -> None:
        value = namespace.get(name, _MISSING)
        if value is not _MISSING:
            self._value(namespace, name, value, names)

    def _value(self, place: Any, name: str, value: Any, names: frozenset[str]) -> None:
        """One object a name led to: hash it if it is the user's, and walk on."""
        if isinstance(value, types.ModuleType):
            if _is_user_module(value):
                # `helpers.scale(x)`: the attribute names sit in the same code's names.
                for attr in sorted(names):
                    self._global(vars(value), attr, names)
            return
        try:
            mine = self._object(name, value)
        except Exception:
            # An object that fails to be looked at (a proxy whose __getattr__ raises, say)
            # is not the user's code as far as the key goes: never fail a run over it.
            mine = False
        if mine:
            self.watched.append((place, name, value))

    def _object(self, name: str, value: Any) -> bool:
        """Hash ``value`` if it is the user's (a constant, function, class or object of a
        user class); whether it was."""
        if _is_dependency(value):
            return False  # a task or trace: checked with its own version
        if _is_plain_data(value):
            # Only the user's namespaces are walked: a constant found here is theirs. Its
            # value as first seen in this process counts (later mutation is not watched).
            self._put("const", name, stable(value))
            return True
        if isinstance(value, functools.partial):
            self._put("partial", stable(value.args), stable(value.keywords))
            return self._object(name, value.func)
        target = _unwrap(value.__func__ if isinstance(value, types.MethodType) else value)
        if isinstance(target, types.FunctionType) and _is_user_function(target):
            self._put("function", name)
            self.function_parts(target)
        elif isinstance(target, type) and _is_user_class(target):
            self._put("class", name)
            self.class_parts(target)
        elif _is_user_class(type(value)):
            # An object of the user's class (`scaler = Scaler()`): its methods count, and
            # its fields if it is a dataclass; other state does not (pass it as an input).
            is_data = dataclasses.is_dataclass(value)
            self._put("instance", name, stable(value) if is_data else "")
            self.class_parts(type(value))
        else:
            return False
        return True

    # -- classes -----------------------------------------------------------------------

    def class_parts(self, cls: type) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        self._put("class", cls.__qualname__)
        for base in cls.__bases__:
            if _is_user_class(base):
                self.class_parts(base)
            else:
                self._put("base", f"{base.__module__}.{base.__qualname__}")
        for attr, value in sorted(vars(cls).items()):
            for fn in _functions_in(value):
                self._put("method", attr)
                self._put(code_digest(fn.__code__))
                self.function_parts(fn)
            if not attr.startswith("__") and _is_plain_data(value):
                self._put("attr", attr, stable(value))
            elif isinstance(value, type) and _is_user_class(value):
                self.class_parts(value)


def code_digest(code: types.CodeType) -> str:
    """A hash of what a code object does: bytecode, names and constants (nested code too),
    not its line numbers, so moving a helper within its file changes nothing."""
    return _code_digest(code)


@functools.lru_cache(maxsize=4096)
def _code_digest(code: types.CodeType) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in (
        code.co_code,
        code.co_exceptiontable if hasattr(code, "co_exceptiontable") else b"",
        repr(code.co_names),
        repr(code.co_varnames),
        repr(code.co_freevars),
        repr(code.co_cellvars),
        repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)),
        repr(code.co_flags),
    ):
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x1f")
    for const in code.co_consts:
        h.update(
            (_code_digest(const) if isinstance(const, types.CodeType) else stable(const)).encode()
        )
        h.update(b"\x1f")
    return h.hexdigest()


@functools.lru_cache(maxsize=4096)
def _names_of(code: types.CodeType) -> frozenset[str]:
    """Every global or attribute name a code object (and the code nested in it) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_of(const)
    return frozenset(names)


def stable(value: Any, depth: int = 0) -> str:
    """A text for a value that is the same in every process (no addresses, no set order)."""
    if depth > 8:
        return "…"
    if isinstance(value, _SCALARS):
        return repr(value)
    if isinstance(value, tuple | list):
        inner = ",".join(stable(v, depth + 1) for v in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, frozenset | set):
        return f"{type(value).__name__}({','.join(sorted(stable(v, depth + 1) for v in value))})"
    if isinstance(value, dict):
        items = sorted(f"{stable(k, depth + 1)}:{stable(v, depth + 1)}" for k, v in value.items())
        return "dict(" + ",".join(items) + ")"
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, types.CodeType):
        return _code_digest(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(
            f"{f.name}={stable(getattr(value, f.name), depth + 1)}"
            for f in dataclasses.fields(value)
        )
        return f"{type(value).__qualname__}({fields})"
    if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '')}"
    # Any other object: its type, never its repr (which may hold an address).
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


_PLAIN_DATA_LIMIT = 10_000  # items: bigger globals are not hashed (pass them as inputs)


def _is_plain_data(value: Any) -> bool:
    """Numbers, strings, bytes, None, and lists, tuples, sets and dicts of them, not huge."""
    budget = [_PLAIN_DATA_LIMIT]

    def plain(v: Any, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0 or depth > 8:
            return False
        if isinstance(v, _SCALARS):
            return True
        if isinstance(v, tuple | list | set | frozenset):
            return all(plain(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return all(plain(k, depth + 1) and plain(x, depth + 1) for k, x in v.items())
        return False

    return plain(value, 0)


def _is_dependency(value: Any) -> bool:
    # Tasks and traces (heddle._sdk) say so with this class attribute: the runtime may
    # not import the sdk.
    return bool(getattr(type(value), "_heddle_dependency", False))


def _unwrap(value: Any) -> Any:
    """The function under decorators that keep ``__wrapped__`` (functools.wraps, lru_cache)."""
    for _ in range(16):
        if _is_dependency(value) or isinstance(value, type):
            return value
        inner = getattr(value, "__wrapped__", None)
        if inner is None:
            return value
        value = inner
    return value


def _functions_in(value: Any) -> Iterator[types.FunctionType]:
    """The functions a class attribute holds: methods, static and class methods, properties."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        for f in (value.fget, value.fset, value.fdel):
            if isinstance(f, types.FunctionType):
                yield f
        return
    value = _unwrap(value)
    if isinstance(value, types.FunctionType):
        yield value


def _is_user_function(fn: types.FunctionType) -> bool:
    module = sys.modules.get(fn.__module__)
    return _is_user_file(
        fn.__module__, getattr(module, "__file__", None) or fn.__code__.co_filename
    )


def _is_user_class(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if module is None:
        # Not an imported module (exec'd code, a class sent by value): where its methods are.
        for value in vars(cls).values():
            for fn in _functions_in(value):
                file = fn.__code__.co_filename
                break
            if file is not None:
                break
    return _is_user_file(cls.__module__, file)


def _is_user_module(module: types.ModuleType) -> bool:
    return _is_user_file(module.__name__, getattr(module, "__file__", None))


@functools.lru_cache(maxsize=1024)
def _is_user_file(module: str, file: str | None) -> bool:
    """Whether code of this module and file is the user's own (not installed, stdlib or Heddle)."""
    if module in ("__main__", "__mp_main__"):
        return True
    if module == "builtins" or module.partition(".")[0] == "heddle":
        return False
    if not file or file.startswith("<frozen"):
        return False
    if file.startswith("<"):
        return True  # a notebook cell or exec'd code: the user's
    path = os.path.realpath(file)
    return not any(path.startswith(prefix) for prefix in _library_prefixes())


@functools.lru_cache(maxsize=1)
def _library_prefixes() -> tuple[str, ...]:
    """Folders whose code is not the user's: site-packages, the standard library, Heddle."""
    paths: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            paths.add(p)
    with contextlib.suppress(AttributeError):  # some virtualenvs' site module
        paths.update(site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        paths.add(user_site)
    paths.add(str(Path(__file__).resolve().parents[1]))  # the heddle package
    return tuple(os.path.realpath(p) + os.sep for p in paths)
