"""Plain records that the store returns: one frozen dataclass per table row."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

# Action and run states. An action moves queued -> running -> succeeded | failed,
# possibly back to running for another attempt; succeeded is final.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
ABORTED = "aborted"
FINAL_STATES = frozenset({SUCCEEDED, FAILED, ABORTED})


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    name: str | None
    root_task: str
    root_action_id: str
    status: str
    program: str
    inputs: bytes
    output: bytes | None
    error: str | None
    executor: str
    owner: str | None
    heartbeat_at: float | None
    abort_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    generation: int = 0


@dataclass(frozen=True, slots=True)
class ActionRecord:
    id: str
    run_id: str
    parent_id: str | None
    seq: int
    kind: str
    task_name: str
    task_version: str
    group_name: str | None
    status: str
    attempts: int
    cached: bool
    cache_key: str | None
    inputs: bytes | None
    output: bytes | None
    error: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    source_run_id: str | None = None
    source_action_id: str | None = None
    # JSON: the tasks and traces the action's output depended on (its subtree), with
    # their versions; null for an action that called none.
    deps: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    action_id: str
    number: int
    run_id: str
    status: str
    task_version: str
    worker: str | None
    error: str | None
    output: bytes | None
    started_at: float | None
    finished_at: float | None
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    queued_at: float | None = None


class CacheEntry(NamedTuple):
    """A cached output: the literal, what it depended on, and the action that computed it.

    A NamedTuple, not a frozen dataclass: every cache hit reads one, and this is the
    cheapest immutable record to build.
    """

    key: str
    task_name: str
    output: bytes
    run_id: str
    action_id: str
    created_at: float
    deps: str | None = None


class RunEventKind(StrEnum):
    """What a run event tells (stored as its value)."""

    # A succeeded action's output refers to a blob that is missing or corrupt: it runs
    # again instead of being replayed.
    OUTPUT_LOST = "output_lost"
    # A running action found a blob of its inputs missing or corrupt.
    INPUT_LOST = "input_lost"


@dataclass(frozen=True, slots=True)
class RunEventRecord:
    """Something that happened to a run besides its actions' states."""

    id: int
    run_id: str
    at: float
    kind: str
    action_id: str | None
    message: str


@dataclass(slots=True)
class WriteBatch:
    """Rows to write in one transaction (the unit of group commit).

    A row is a dict keyed by column name (update keys prefixed with ``_``, e.g.
    ``_run_id``, ``_id``) or an object whose attributes are named like the columns.
    """

    action_inserts: list[Any] = field(default_factory=list)
    action_updates: list[Any] = field(default_factory=list)
    attempt_inserts: list[Any] = field(default_factory=list)
    attempt_updates: list[Any] = field(default_factory=list)
    cache_puts: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.action_inserts
            or self.action_updates
            or self.attempt_inserts
            or self.attempt_updates
            or self.cache_puts
        )
