"""Where a scenario's runs are kept (a Target), and what the store holds about a run at one
moment (a Snapshot), read in this process through a session of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from heddle._sdk.config import Session, resolve_settings

UNFINISHED = ("queued", "running")


@dataclass(frozen=True)
class Target:
    """A store (SQLite in the home, or a PostgreSQL URL), blobs, and the executor runs use."""

    kind: str  # "sqlite" or "postgres"
    home: Path
    db_url: str | None = None
    storage_url: str | None = None
    executor: str = "process"

    def store_args(self) -> list[str]:
        """The store options every program and ``heddle`` command of the suite takes."""
        args = ["--home", str(self.home)]
        if self.db_url:
            args += ["--db-url", self.db_url]
        if self.storage_url:
            args += ["--storage-url", self.storage_url]
        return args

    def session(self) -> Session:
        """A session on this target for reading, apart from the process's current one (a
        test may watch several targets at once)."""
        return Session(resolve_settings(self.home, self.db_url, self.storage_url, self.executor))


@dataclass(frozen=True, slots=True)
class ActionView:
    id: str
    key: str  # task short name and inputs, as the ledger writes them: "leaf:3"
    kind: str
    status: str
    output: bytes | None  # the output literal as stored


@dataclass
class Snapshot:
    run_id: str
    status: str
    owner: str | None
    output: Any  # the decoded output of a succeeded run
    actions: list[ActionView] = field(default_factory=list)
    # Attempts still queued or running: (action key, attempt number, status).
    open_attempts: list[tuple[str, int, str]] = field(default_factory=list)

    def succeeded(self) -> dict[str, ActionView]:
        return {a.key: a for a in self.actions if a.status == "succeeded"}

    def unfinished(self) -> list[str]:
        """Actions and attempts still queued or running."""
        stuck = [f"action {a.key} {a.status}" for a in self.actions if a.status in UNFINISHED]
        stuck += [f"attempt {key}#{n} {status}" for key, n, status in self.open_attempts]
        return stuck


def _short(task_name: str) -> str:
    return task_name.rsplit(".", 1)[-1]


def _fmt(value: Any) -> str:
    # Lists stand for their length (digest's list of chunks), as the program writes them.
    return str(len(value)) if isinstance(value, (list, tuple)) else str(value)


def key_of(session: Session, task_name: str, inputs_literal: bytes | None) -> str:
    if inputs_literal is None:
        return f"{_short(task_name)}:?"
    try:
        data = session.literals.from_literal(inputs_literal)
        args = msgspec.msgpack.decode(data)
    except Exception as exc:  # a corrupt input blob: still an action to account for
        return f"{_short(task_name)}:<unreadable {type(exc).__name__}>"
    values = args.values() if isinstance(args, dict) else args
    return f"{_short(task_name)}:{'.'.join(_fmt(v) for v in values)}"


def take(session: Session, run_id: str) -> Snapshot:
    """What the store holds about ``run_id`` now."""
    store = session.store
    rec = store.get_run(run_id)
    output = None
    if rec.status == "succeeded" and rec.output is not None:
        output = msgspec.msgpack.decode(session.literals.from_literal(rec.output))
    snap = Snapshot(run_id, rec.status, rec.owner, output)
    keys: dict[str, str] = {}
    for a in store.actions_of_run(run_id):
        key = key_of(session, a.task_name, a.inputs)
        keys[a.id] = key
        snap.actions.append(ActionView(a.id, key, a.kind, a.status, a.output))
    for t in store.attempts_of_run(run_id):
        if t.status in UNFINISHED:
            snap.open_attempts.append((keys.get(t.action_id, t.action_id), t.number, t.status))
    return snap
