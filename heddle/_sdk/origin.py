"""Where user code comes from, told the same way however it was loaded.

Owns three things that must not depend on how a program was started: the module part
of a trace's name, the stand-in for a function's source when it has none, and the
by-value pickling that ships a script's functions to workers with their file names.
"""

from __future__ import annotations

import io
import os
import pickle
import types
from collections import ChainMap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

# Module names a script's code gets: "__main__" when started, "__mp_main__" in a
# multiprocessing child, and PROGRAM_MODULE... when Heddle loads a file whose name is
# not an identifier or is taken (see program.load_file).
SCRIPT_MODULES = ("__main__", "__mp_main__")
PROGRAM_MODULE = "heddle_program"
# The module part of names for code that has no file: a notebook cell, `python -c`,
# stdin, a string given to exec().
NO_FILE_MODULE = "__main__"


def has_source_file(filename: str) -> bool:
    """Whether code compiled from ``filename`` came from a file on disk.

    "<stdin>", "<string>", "<ipython-input-...>" and the like name no file; a notebook
    kernel names its cells after files it never writes (/tmp/ipykernel_1/123.py).
    """
    return bool(filename) and not filename.startswith("<") and os.path.isfile(filename)


def module_identity(fn: Callable[..., Any]) -> str:
    """The module part of a name for ``fn``, the same wherever its code was loaded.

    An importable module is its name. A script is the name of its file without ".py",
    whether it runs as ``python file.py`` (``__main__``), in a worker, or loaded from
    its file by ``heddle run`` / ``heddle recover``. Code with no file is "__main__".
    """
    module = getattr(fn, "__module__", None) or NO_FILE_MODULE
    if module not in SCRIPT_MODULES and not module.startswith(PROGRAM_MODULE):
        return module
    code = getattr(fn, "__code__", None)
    if code is not None and has_source_file(code.co_filename):
        return Path(code.co_filename).stem
    return NO_FILE_MODULE


def code_fingerprint(code: types.CodeType) -> str:
    """A stand-in for the source of code that has none (exec'd strings, stdin, -c).

    Stable across processes: nested code objects (comprehensions, inner functions)
    are described rather than repr'd (their repr holds an address), and frozensets
    (``x in {"a", "b"}``) are sorted (their order follows string hashing).
    """

    def const(c: object) -> str:
        if isinstance(c, types.CodeType):
            return code_fingerprint(c)
        if isinstance(c, frozenset):
            return "frozenset(" + ",".join(sorted(const(x) for x in c)) + ")"
        if isinstance(c, tuple):
            return "(" + ",".join(const(x) for x in c) + ")"
        return repr(c)

    return "|".join(
        (
            code.co_qualname,
            code.co_code.hex(),
            const(code.co_consts),
            repr(code.co_names),
            repr(code.co_varnames),
            repr(code.co_freevars),
            repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)),
            str(code.co_flags),
        )
    )


# cloudpickle's own reducer of code objects replaces the file name with this, so that
# pickles do not depend on where code lives. A task's body needs its file, though: its
# tracebacks name it and its traces are named after it.
_CLOUDPICKLE_FILE = "<dynamic-code>"


def _code_reduce(code: types.CodeType) -> tuple[Any, ...]:
    make, args = cloudpickle.cloudpickle._code_reduce(code)
    try:
        at = args.index(_CLOUDPICKLE_FILE)
    except ValueError:  # a cloudpickle that keeps file names already
        return (make, args)
    return (make, (*args[:at], code.co_filename, *args[at + 1 :]))


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, except that functions pickled by value keep their file names."""

    dispatch_table = ChainMap({types.CodeType: _code_reduce}, cloudpickle.Pickler.dispatch_table)


def dumps_by_value(obj: object) -> bytes:
    """Pickle ``obj`` as cloudpickle does (a script's functions by value), keeping the
    file and line numbers of their code."""
    with io.BytesIO() as f:
        _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return f.getvalue()
