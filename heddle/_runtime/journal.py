"""The journal: buffers state changes and writes them to the store in group commits.

Every state change is handed to the journal before the runtime acts on it; a
caller that must not go on until a change is durable (a child's result being
returned) awaits ``durable()``. All changes made in one turn of the event loop
land in one transaction, which is what makes 10,000 children cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from heddle._faults import crashpoint
from heddle._store import Store, WriteBatch

# Commits durable() may write at once, without yielding, before the loop gets a turn.
MAX_STREAK = 8


@dataclass(slots=True)
class ActionState:
    """The latest known state of one action: the row the journal will write.

    Attribute names are the column names, so the store reads them directly.
    """

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
    cached: int  # 0 or 1: written as is to an integer column
    cache_key: str | None
    inputs: bytes | None
    output: bytes | None
    error: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    source_run_id: str | None = None
    source_action_id: str | None = None


@dataclass(slots=True)
class AttemptState:
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


class Journal:
    """Group-commit buffer between the controller and the store.

    The write runs on the event loop's thread once per loop turn: everything put
    during the turn lands in one transaction, and a lone commit costs no thread hop.
    """

    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, gather_turns: int = 0
    ) -> None:
        self._store = store
        # Loop turns a commit waits before it is written, so that messages already
        # waiting on the loop's sockets (workers reporting back) join it.
        self._gather_turns = gather_turns
        self._turns_left = 0
        self._writer = store.writer()
        self._loop = loop
        self._actions: dict[str, ActionState] = {}
        self._attempts: dict[tuple[str, int], AttemptState] = {}
        self._cache_puts: list[dict[str, Any]] = []
        self._persisted_actions: set[str] = set()
        self._persisted_attempts: set[tuple[str, int]] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._handle: asyncio.Handle | None = None
        self._streak = 0  # commits written in durable() since the loop last had a turn
        self.commits = 0
        self.failed: BaseException | None = None

    def mark_persisted(self, action_ids: set[str], attempts: set[tuple[str, int]]) -> None:
        """Tell the journal which rows already exist (after loading a run to recover it)."""
        self._persisted_actions |= action_ids
        self._persisted_attempts |= attempts

    def put_action(self, state: ActionState) -> None:
        self._actions[state.id] = state
        self._schedule()

    def put_attempt(self, state: AttemptState) -> None:
        self._attempts[(state.action_id, state.number)] = state
        self._schedule()

    def put_cache(self, row: dict[str, Any]) -> None:
        self._cache_puts.append(row)
        self._schedule()

    async def durable(self) -> None:
        """Wait until everything handed to the journal so far is committed."""
        if self.failed is not None:
            raise self.failed
        if self._streak < MAX_STREAK and self._nothing_else_ready():
            # No other code can join this commit in this loop turn (a chain of awaited
            # calls): write it now instead of a turn later. The caller goes on without
            # yielding, so after MAX_STREAK of these the loop gets its turn.
            self._streak += 1
            self._cancel_scheduled()
            self.flush_now()
            return
        self._streak = 0
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        self._schedule()
        await fut

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._turns_left = self._gather_turns
            self._handle = self._loop.call_soon(self._flush)

    def _nothing_else_ready(self) -> bool:
        """Whether the loop has nothing to run this turn but our own pending flush.

        Reads the ready queue of asyncio's own loop (``_ready``); on another loop
        implementation this answers False and every commit waits for the turn's end.
        """
        if self._gather_turns:
            return False
        ready = getattr(self._loop, "_ready", None)
        if ready is None:
            return False
        if len(ready) > MAX_STREAK + 1:
            return False
        return all(h is self._handle or h.cancelled() for h in ready)

    def _cancel_scheduled(self) -> None:
        if self._scheduled and self._handle is not None:
            self._handle.cancel()
            self._scheduled = False
        self._handle = None

    def _take_batch(
        self,
    ) -> tuple[WriteBatch, list[asyncio.Future[None]], set[str], set[tuple[str, int]]]:
        batch = WriteBatch()
        new_actions: set[str] = set()
        for aid, a in self._actions.items():
            if aid in self._persisted_actions:
                batch.action_updates.append(a)
            else:
                batch.action_inserts.append(a)
                new_actions.add(aid)
        new_attempts: set[tuple[str, int]] = set()
        for key, t in self._attempts.items():
            if key in self._persisted_attempts:
                batch.attempt_updates.append(t)
            else:
                batch.attempt_inserts.append(t)
                new_attempts.add(key)
        batch.cache_puts = self._cache_puts
        waiters = self._waiters
        self._actions = {}
        self._attempts = {}
        self._cache_puts = []
        self._waiters = []
        return batch, waiters, new_actions, new_attempts

    def _flush(self) -> None:
        if self._turns_left:
            self._turns_left -= 1
            self._loop.call_soon(self._flush)
            return
        self._scheduled = False
        # On failure every waiter has already been handed the error by _fail.
        with contextlib.suppress(Exception):
            self.flush_now()

    def _committed(
        self,
        waiters: list[asyncio.Future[None]],
        new_actions: set[str],
        new_attempts: set[tuple[str, int]],
    ) -> None:
        self.commits += 1
        self._persisted_actions |= new_actions
        self._persisted_attempts |= new_attempts
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _fail(self, waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
        # A failed commit means the log can no longer be trusted for this process:
        # every waiter, now and later, sees the error and the run stops.
        self.failed = exc
        for w in waiters:
            if not w.done():
                w.set_exception(exc)

    def flush_now(self) -> None:
        """Write whatever is pending, synchronously, on the loop's thread."""
        if self.failed is not None:
            # A failed commit may have landed (its answer lost): writing on would insert
            # its rows again, and the error a caller hears must stay the first one.
            raise self.failed
        batch, waiters, new_actions, new_attempts = self._take_batch()
        try:
            if batch:
                crashpoint("journal.before_commit")
            self._writer.write(batch)
        except BaseException as exc:
            self._fail(waiters, exc)
            raise
        crashpoint("journal.after_commit")
        self._committed(waiters, new_actions, new_attempts)

    def close(self) -> None:
        self._writer.close()
