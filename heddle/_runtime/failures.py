"""How a task's failure is recorded and raised again in its caller.

A failure is stored as JSON (kind, exception type, message, traceback and, where
possible, the pickled exception) so another process can rebuild the original
exception type, or fall back to heddle.TaskError with the remote traceback. A rebuilt
exception's __cause__ is a RemoteTraceback holding where it was really raised.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import sysconfig
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cloudpickle

from heddle._errors import (
    ConfigError,
    NonRecoverableError,
    OOMError,
    ResourceError,
    RunAbortedError,
    TaskError,
    TimeoutError,
    TypeMismatchError,
    WorkerLostError,
)

USER = "user"
TIMEOUT = "timeout"
OOM = "oom"
SYSTEM = "system"
ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    type_name: str
    message: str
    traceback: str
    pickled: bytes | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "type": self.type_name,
                "message": self.message,
                "traceback": self.traceback,
                "pickled": None
                if self.pickled is None
                else base64.b64encode(self.pickled).decode(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Failure:
        d = json.loads(text)
        pickled = d.get("pickled")
        return cls(
            kind=d["kind"],
            type_name=d["type"],
            message=d["message"],
            traceback=d.get("traceback", ""),
            pickled=None if pickled is None else base64.b64decode(pickled),
        )


def _type_name(exc: BaseException) -> str:
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def classify(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, OOMError):
        return OOM
    if isinstance(exc, RunAbortedError):
        return ABORTED
    if isinstance(exc, WorkerLostError):
        return SYSTEM
    return USER


class RemoteTraceback(Exception):
    """Where an exception rebuilt in this process was really raised: in a task's
    worker, or in a child task. Set as the rebuilt exception's ``__cause__``, so
    ``traceback.print_exc()`` shows the remote frames first (Heddle's own left out);
    ``.traceback`` is the remote traceback as it was recorded."""

    __module__ = "heddle"

    def __init__(self, failure: Failure, task: str, action_id: str | None) -> None:
        super().__init__(task, action_id)
        self.failure = failure
        self.task = task
        self.action_id = action_id
        self.traceback = failure.traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteTraceback, (self.failure, self.task, self.action_id))

    def __str__(self) -> str:
        where = f"in heddle task {self.task!r}" + (
            f" (action {self.action_id})" if self.action_id else ""
        )
        shown = user_traceback(self.traceback).rstrip()
        return f"{where}:\n{shown}" if shown else f"{where} (no traceback was recorded)"


def failure_of(exc: BaseException, kind: str | None = None) -> Failure:
    """The failure to record for ``exc``.

    An exception rebuilt from another process's failure that reached here through
    Heddle alone (executor, controller, driver) is that failure, passed on as it was
    recorded; once user code has let it through, its own frames are recorded too,
    with the remote traceback as its cause.
    """
    relayed = _relayed(exc)
    if relayed is not None:
        return relayed if kind in (None, relayed.kind) else dataclasses.replace(relayed, kind=kind)
    try:
        pickled: bytes | None = cloudpickle.dumps(exc)
    except Exception:
        pickled = None
    return Failure(
        kind=kind or classify(exc),
        type_name=_type_name(exc),
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        pickled=pickled,
    )


def is_retryable(exc: BaseException) -> bool:
    """User errors, timeouts and OOMs are retried. Not retried: NonRecoverableError,
    aborts, requests the machine can never satisfy, and an output that does not match
    the task's declared type (it would fail the same way every time)."""
    return not isinstance(
        exc, NonRecoverableError | RunAbortedError | ResourceError | TypeMismatchError | ConfigError
    )


def rebuild(
    failure: Failure, task: str, action_id: str | None, run_id: str | None
) -> BaseException:
    """The exception to raise in the caller: the original type if it unpickles, else
    TaskError; either way caused by a RemoteTraceback of where it was raised."""
    exc: BaseException | None = None
    if failure.pickled is not None:
        try:
            loaded: Any = cloudpickle.loads(failure.pickled)
            if isinstance(loaded, BaseException):
                exc = loaded
        except Exception:
            pass
    if exc is None:
        exc = TaskError(
            task, failure.type_name, failure.message, failure.traceback, action_id, run_id
        )
    exc.__cause__ = RemoteTraceback(failure, task, action_id)
    return exc


def _relayed(exc: BaseException) -> Failure | None:
    """The failure ``exc`` was rebuilt from, if no user code has raised it since."""
    cause = exc.__cause__
    if not isinstance(cause, RemoteTraceback) or _passed_user_code(exc.__traceback__):
        return None
    return cause.failure


# -- telling Heddle's frames from the user's -------------------------------------------

_HEDDLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_PATHS = sysconfig.get_paths()
_STDLIB_DIRS = tuple({os.path.join(_PATHS[k], "") for k in ("stdlib", "platstdlib")})
_SITE_DIRS = tuple({os.path.join(_PATHS[k], "") for k in ("purelib", "platlib")})


def _is_relay_frame(filename: str) -> bool:
    """Heddle's code, or the standard library's (asyncio and concurrent.futures pass
    exceptions between tasks and threads); site-packages is the user's."""
    if filename.startswith(_HEDDLE_DIR) or filename.startswith("<frozen "):
        return True
    return filename.startswith(_STDLIB_DIRS) and not filename.startswith(_SITE_DIRS)


def _passed_user_code(tb: TracebackType | None) -> bool:
    """Whether any frame of ``tb`` is user code."""
    while tb is not None:
        if not _is_relay_frame(tb.tb_frame.f_code.co_filename):
            return True
        tb = tb.tb_next
    return False


def _heddle_file_pattern() -> re.Pattern[str]:
    # A frame of Heddle's own code, also in a traceback recorded on another machine
    # (where the package may live elsewhere): ".../heddle/<one of its parts>".
    parts = sorted(
        re.escape(name) + (r"[/\\]" if os.path.isdir(os.path.join(_HEDDLE_DIR, name)) else "$")
        for name in os.listdir(_HEDDLE_DIR)
        if name.endswith(".py") or os.path.isfile(os.path.join(_HEDDLE_DIR, name, "__init__.py"))
    )
    return re.compile(r"(^|[/\\])heddle[/\\](" + "|".join(parts) + ")")


_HEDDLE_FILE = _heddle_file_pattern()
# The standard library of another machine's Python, as well as this one's.
_STDLIB_FILE = re.compile(r"[/\\]lib[/\\]python3\.\d+[/\\](?!site-packages|dist-packages)")
_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line \d+')


def _is_heddle_file(filename: str) -> bool:
    return filename.startswith(_HEDDLE_DIR) or _HEDDLE_FILE.search(filename) is not None


def _is_stdlib_file(filename: str) -> bool:
    if filename.startswith(_SITE_DIRS):
        return False
    return filename.startswith(_STDLIB_DIRS) or _STDLIB_FILE.search(filename) is not None


def user_traceback(text: str) -> str:
    """A formatted traceback without Heddle's own frames, nor the standard library's
    frames Heddle called (an event loop running a task's body), which say nothing
    about the user's bug. Everything else is kept as it was: the user's frames (and
    the standard library's frames they called), chained causes, exception lines, notes.
    """
    kept: list[str] = []
    skipping = in_heddle = False
    for line in text.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            file = frame["file"]
            if _is_heddle_file(file):
                skipping = in_heddle = True
            elif in_heddle and _is_stdlib_file(file):
                skipping = True
            else:
                skipping = in_heddle = False
        elif not line.startswith("    "):
            # Not a frame's source line (those are indented under it): a new section.
            skipping = in_heddle = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")
