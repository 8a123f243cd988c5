"""How a task's failure is recorded and raised again in its caller.

A failure is stored as JSON (kind, exception type, message, traceback and, where
possible, the pickled exception) so another process can rebuild the original
exception type, or fall back to heddle.TaskError with the remote traceback.
"""

from __future__ import annotations

import base64
import json
import traceback
from dataclasses import dataclass
from typing import Any

import cloudpickle

from heddle._errors import (
    ConfigError,
    HeddleError,
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


def failure_of(exc: BaseException, kind: str | None = None) -> Failure:
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
    """The exception to raise in the caller: the original type if it unpickles, else TaskError."""
    if failure.pickled is not None:
        try:
            exc: Any = cloudpickle.loads(failure.pickled)
            if isinstance(exc, BaseException):
                if not isinstance(exc, HeddleError) and failure.traceback:
                    exc.add_note(f"(raised in heddle task {task!r}, action {action_id})")
                return exc
        except Exception:
            pass
    return TaskError(task, failure.type_name, failure.message, failure.traceback, action_id, run_id)
