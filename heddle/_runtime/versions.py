"""The tasks and traces the running program defines, by name: what cache dependencies are checked against.

Tasks and traces register here when they are defined (decorated, or unpickled in a
worker). The latest definition of a name wins, as it does for the name in the program
(a notebook cell run again redefines its tasks).
"""

from __future__ import annotations

from collections.abc import Callable

from heddle._runtime.fingerprint import code_fingerprint
from heddle._runtime.ids import source_version

TASK = "task"
TRACE = "trace"

# (kind, name) -> a function giving that definition's dependency version (computed lazily:
# it hashes the user code the task uses).
_defined: dict[tuple[str, str], Callable[[], str]] = {}


def define(kind: str, name: str, version_of: Callable[[], str]) -> None:
    """Record the current definition of a task or trace."""
    _defined[(kind, name)] = version_of


def current(kind: str, name: str) -> str | None:
    """The dependency version of the task or trace as the program now defines it, or
    None when this process does not know it (then nothing that called it may be reused)."""
    version_of = _defined.get((kind, name))
    return None if version_of is None else version_of()


def dependency_version(version: str, fn: Callable[..., object]) -> str:
    """What a caller's cache entry records for a task or trace: its source version and the
    user code it uses (helpers, classes, constants, its defaults)."""
    return source_version(version, code_fingerprint(fn))
