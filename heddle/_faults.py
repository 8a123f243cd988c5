"""Crash points: named places in Heddle where a process can be made to kill itself.

The chaos suite (tests/chaos) crashes a driver or a worker at every journal boundary
by naming a point in ``HEDDLE_CRASHPOINT``; the process then SIGKILLs itself at that
point, exactly as an OOM kill or a lost machine would stop it. Unset (always, outside
the chaos suite), a crash point costs one global check.

``HEDDLE_CRASHPOINT`` is a comma-separated list of ``name[:hit][@role]``: crash at the
``hit``-th time (default 1) this process reaches ``name``, and only in a process of
that role (``driver`` or ``worker``; default both). With ``HEDDLE_CRASHPOINT_ONCE``
naming a file, only the first process to crash creates it (and writes the point, its
role and pid there); every later hit, in any process, goes on: one crash per scenario
however many processes inherit the setting. Like _errors, this module sits below every
layer (the store has a crash point too) and imports nothing else from the package.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

from heddle._errors import ConfigError

ENV = "HEDDLE_CRASHPOINT"
ONCE_ENV = "HEDDLE_CRASHPOINT_ONCE"

DRIVER = "driver"
WORKER = "worker"
ROLES = (DRIVER, WORKER)

# Every crash point, and where it is: the suite crashes at each of them.
POINTS: dict[str, str] = {
    "journal.before_commit": "driver: a group commit is about to be written; none of it is durable",
    "journal.mid_commit": "driver: the commit's statements ran, COMMIT was not sent",
    "journal.after_commit": "driver: committed, but no caller waiting on it was told",
    "inline.after_body": "driver (inline executor): the body returned; its result is not journalled",
    "worker.after_body": "worker: the body returned; DONE is not sent to the driver",
    "run.before_finish": "driver: the root is over; the run's final status is not written",
    "run.after_finish": "driver: the run's final status is written; the process has not exited",
}


@dataclass(frozen=True, slots=True)
class CrashPoint:
    name: str
    hit: int = 1
    role: str | None = None


def parse(spec: str) -> dict[str, CrashPoint]:
    """The crash points a ``HEDDLE_CRASHPOINT`` value names, by name (ConfigError if bad)."""
    points: dict[str, CrashPoint] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        rest, _, role = item.partition("@")
        name, _, hit_text = rest.partition(":")
        if name not in POINTS:
            raise ConfigError(
                f"{ENV}: unknown crash point {name!r}; known: {', '.join(sorted(POINTS))}"
            )
        if role and role not in ROLES:
            raise ConfigError(f"{ENV}: role in {item!r} must be one of {', '.join(ROLES)}")
        hit = 1
        if hit_text:
            if not hit_text.isdigit() or int(hit_text) < 1:
                raise ConfigError(f"{ENV}: hit count in {item!r} must be a positive integer")
            hit = int(hit_text)
        points[name] = CrashPoint(name, hit, role or None)
    return points


_armed: dict[str, CrashPoint] | None = None
_once: str | None = None
_role = DRIVER
_hits: dict[str, int] = {}
_lock = threading.Lock()


def arm(spec: str | None, once: str | None = None) -> None:
    """Set the crash points of this process (None disarms them); read from the
    environment at import."""
    global _armed, _once
    points = parse(spec) if spec else {}
    with _lock:
        _hits.clear()
        _once = once or None
        _armed = points or None


def set_role(role: str) -> None:
    """Say what this process is (a worker process calls it when it starts)."""
    global _role
    _role = role


def crashpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is armed for it and this is the hit to crash at."""
    if _armed is None:
        return
    _reached(name)


def _reached(name: str) -> None:
    armed = _armed
    point = None if armed is None else armed.get(name)
    if point is None or (point.role is not None and point.role != _role):
        return
    with _lock:
        n = _hits[name] = _hits.get(name, 0) + 1
    if n != point.hit:
        return
    if _once is not None:
        try:
            fd = os.open(_once, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return  # another process crashed already
        os.write(fd, f"{name} {_role} {os.getpid()}\n".encode())
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(ENV), os.environ.get(ONCE_ENV))
