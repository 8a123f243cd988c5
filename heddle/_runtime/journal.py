"""The journal: buffers state changes and writes them to the store in group commits.

Every state change is handed to the journal before the runtime acts on it; a
caller that must not go on until a change is durable (a child's result being
returned) awaits ``durable()``. All changes made in one turn of the event loop
land in one transaction, which is what makes 10,000 children cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from heddle._faults import crashpoint
from heddle._store import Store, WriteBatch
from heddle._store.retry import Outage, Unavailable

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
    deps: str | None = None  # JSON, see ActionRecord.deps


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

    A commit that fails because the database is unreachable (a restart, a dropped
    connection) is kept with everything put since and tried again after a backoff
    delay, without blocking the loop; its waiters wait. The retried commit upserts,
    since the failed one may have landed. Past the store's outage limit, or on any
    other error, the journal fails: every waiter, now and later, gets the error.
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
        # Set while commits fail for a reason that may pass; the retry timer owns writing.
        self._outage: Outage | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        # A commit failed with its outcome unknown: the next one upserts its inserts.
        self._uncertain = False
        self._on_failure: list[Callable[[BaseException], None]] = []
        self.commits = 0
        self.outages = 0
        self.failed: BaseException | None = None

    def mark_persisted(self, action_ids: set[str], attempts: set[tuple[str, int]]) -> None:
        """Tell the journal which rows already exist (after loading a run to recover it)."""
        self._persisted_actions |= action_ids
        self._persisted_attempts |= attempts

    def fence(self, run_id: str, generation: int) -> None:
        """Commit only while ``run_id`` is at ``generation``: once another process took
        the run over, the journal fails with RunTakenOverError and writes nothing more."""
        self._writer.fence_with(run_id, generation)

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        """Call ``callback(error)`` (on the loop's thread) when the journal fails."""
        self._on_failure.append(callback)

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
        if self._outage is None and self._streak < MAX_STREAK and self._nothing_else_ready():
            # No other code can join this commit in this loop turn (a chain of awaited
            # calls): write it now instead of a turn later. The caller goes on without
            # yielding, so after MAX_STREAK of these the loop gets its turn.
            self._streak += 1
            self._cancel_scheduled()
            if self._commit():
                return
            if self.failed is not None:
                raise self.failed
        self._streak = 0
        fut: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(fut)
        self._schedule()
        await fut

    def _schedule(self) -> None:
        if self._outage is not None or self.failed is not None:
            return  # the retry timer writes everything pending; a failed journal nothing
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

    def _put_back(self, batch: WriteBatch, waiters: list[asyncio.Future[None]]) -> None:
        """Return a batch that did not commit to the buffers (before anything put since)."""
        actions = {a.id: a for a in (*batch.action_inserts, *batch.action_updates)}
        actions.update(self._actions)
        self._actions = actions
        attempts = {
            (t.action_id, t.number): t for t in (*batch.attempt_inserts, *batch.attempt_updates)
        }
        attempts.update(self._attempts)
        self._attempts = attempts
        self._cache_puts = batch.cache_puts + self._cache_puts
        self._waiters = waiters + self._waiters

    def _flush(self) -> None:
        if self._turns_left:
            self._turns_left -= 1
            self._loop.call_soon(self._flush)
            return
        self._scheduled = False
        if self._outage is not None or self.failed is not None:
            return
        # On failure every waiter has already been handed the error by _fail.
        with contextlib.suppress(Exception):
            self._commit()

    def _commit(self) -> bool:
        """One try at committing everything pending, on the loop's thread.

        True: committed. False: the database is unreachable, the batch is kept and a
        retry is scheduled (or, past the outage limit, the journal has failed).
        Raises (after failing the journal) on any other error.
        """
        batch, waiters, new_actions, new_attempts = self._take_batch()
        try:
            if batch:
                crashpoint("journal.before_commit")
            self._writer.try_write(batch, retrying=self._uncertain)
        except Unavailable as exc:
            self._put_back(batch, waiters)
            self._ride_out(exc)
            return False
        except BaseException as exc:
            self._fail(waiters, exc)
            raise
        if batch:
            crashpoint("journal.after_commit")
        self._committed(waiters, new_actions, new_attempts)
        return True

    def _ride_out(self, exc: Unavailable) -> None:
        """Schedule the next try of a commit that found the database unreachable."""
        self._uncertain = True
        if self._outage is None:
            self._outage = self._store.retry.outage()
            self.outages += 1
        delay = self._outage.next_delay()
        if delay is None:
            error = self._store.unreachable("record actions", exc, self._outage, self._hint())
            self._outage = None
            _batch, waiters, _a, _t = self._take_batch()
            self._fail(waiters, error)
            return
        self._retry_handle = self._loop.call_later(delay, self._retry)

    def _hint(self) -> str:
        fence = self._writer.fence
        run = fence.run_id if fence is not None else "RUN"
        return f"the run stopped here; once the database is back, `heddle recover {run}` resumes it"

    def _retry(self) -> None:
        self._retry_handle = None
        if self.failed is not None:
            return
        with contextlib.suppress(Exception):
            self._commit()

    def _committed(
        self,
        waiters: list[asyncio.Future[None]],
        new_actions: set[str],
        new_attempts: set[tuple[str, int]],
    ) -> None:
        self.commits += 1
        self._uncertain = False
        self._persisted_actions |= new_actions
        self._persisted_attempts |= new_attempts
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._outage is not None:
            # The database is back: write what was put while we waited, as usual.
            self._outage = None
            if self._actions or self._attempts or self._cache_puts or self._waiters:
                self._schedule()

    def fail(self, exc: BaseException) -> None:
        """Stop the journal from outside (the driver found the run taken over): every
        waiter, now and later, gets ``exc``, and nothing more is written."""
        if self.failed is not None:
            return
        _batch, waiters, _a, _t = self._take_batch()
        self._fail(waiters, exc)

    def _fail(self, waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
        # A failed commit means the log can no longer be trusted for this process:
        # every waiter, now and later, sees the error and the run stops.
        first = self.failed is None
        self.failed = exc
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        for w in (*waiters, *self._waiters):
            if not w.done():
                w.set_exception(exc)
        self._waiters = []
        if first:
            for callback in self._on_failure:
                callback(exc)

    def flush_now(self) -> None:
        """Write whatever is pending, synchronously, on the loop's thread. Through an
        outage this blocks, retrying for as long as the store's policy allows."""
        if self.failed is not None:
            raise self.failed
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._outage = None
        batch, waiters, new_actions, new_attempts = self._take_batch()
        try:
            if batch:
                crashpoint("journal.before_commit")
            self._writer.write(batch, retrying=self._uncertain)
        except BaseException as exc:
            self._fail(waiters, exc)
            raise
        crashpoint("journal.after_commit")
        self._committed(waiters, new_actions, new_attempts)

    def close(self) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._writer.close()
