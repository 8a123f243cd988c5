"""The controller: turns task calls into durable actions.

For each call it derives the action id, replays a recorded success, serves a
cache hit, or runs the task through the executor with retries and timeouts,
journalling every state change before acting on it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from heddle._errors import HeddleError, OOMError, RunAbortedError
from heddle._errors import TimeoutError as HeddleTimeout
from heddle._runtime import failures
from heddle._runtime.cache import CachedOutput, Dependencies, OutputCache
from heddle._runtime.calls import PreparedCall, admit, prepare_call
from heddle._runtime.context import ActionContext, current_group
from heddle._runtime.healing import name_producer, recorded_output
from heddle._runtime.ids import action_id, input_hash
from heddle._runtime.journal import ActionState, AttemptState, Journal
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import Resources, TaskSpec
from heddle._runtime.versions import TRACE
from heddle._store import (
    ABORTED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ActionRecord,
    AttemptRecord,
    Store,
)

WORKER = f"{socket.gethostname()}:{os.getpid()}"
LOST = "lost"


@dataclass(slots=True)
class Attempt:
    """One try of an action, as the executor sees it (and reports back on).

    The executor calls ``started()`` when the body begins to run (after waiting for
    resources), and ``requeued()`` if a body it reported as started never ran (a job
    sent ahead to a worker and taken back): until then the attempt is queued.
    """

    number: int
    resources: Resources
    worker: str = WORKER
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    log_key: str | None = None
    started_at: float | None = None
    # Who journals its start (the controller), and the rows it updates then.
    owner: Controller | None = None
    state: ActionState | None = None
    record: AttemptState | None = None
    # What the body called, when its children ran under a controller of their own (in a
    # Ray worker): JSON dependencies for the action's cache entry.
    deps: str | None = None

    def started(self, at: float | None = None) -> None:
        if self.started_at is None:
            self.started_at = time.time() if at is None else at
            if self.owner is not None:
                self.owner.attempt_started(self)

    def requeued(self) -> None:
        if self.started_at is not None:
            self.started_at = None
            if self.owner is not None:
                self.owner.attempt_requeued(self)


class Executor(Protocol):
    """Runs one attempt of an action's body: encoded inputs in, encoded output out."""

    name: str
    # Loop turns each journal commit waits to gather more (see Journal).
    gather_turns: int

    async def execute(self, call: PreparedCall, attempt: Attempt, ctx: ActionContext) -> bytes: ...

    def shutdown(self) -> None: ...


@dataclass(slots=True)
class Stats:
    """Live counters for progress displays."""

    started: int = 0
    queued: int = 0  # waiting for resources (or a map slot), body not started
    running: int = 0  # body running now
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cached: int = 0
    replayed: int = 0
    adopted: int = 0  # calls that attached to the same action still running
    orphans_cancelled: int = 0
    # The latest failures, for live views (older ones drop off).
    failures: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))


class _Abandoned(Exception):
    """The running action a call attached to was cancelled before it finished."""


class _Running:
    """An action running in this process: the task running its call, and the calls
    that attached to it (a later attempt of its parent calling it again)."""

    __slots__ = ("parent", "task", "waiters")

    def __init__(self, task: asyncio.Task[Any] | None, parent: str | None) -> None:
        self.task = task
        self.parent = parent
        self.waiters: list[asyncio.Future[bytes]] | None = None

    def join(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = loop.create_future()
        if self.waiters is None:
            self.waiters = []
        self.waiters.append(fut)
        return fut

    def finish(self, out: bytes | None, exc: BaseException | None) -> None:
        for fut in self.waiters or ():
            if fut.done():
                continue
            if isinstance(exc, asyncio.CancelledError):
                fut.set_exception(_Abandoned())
            elif exc is not None:
                fut.set_exception(exc)
            else:
                assert out is not None
                fut.set_result(out)


@dataclass(slots=True)
class _Budgets:
    """What is left of an action's three retry budgets: user errors and timeouts share
    the task's retries; lost workers have the system budget; OOMs have the OOMRetry
    budget when one is set (else the task's retries)."""

    spec: TaskSpec
    user: int
    system: int
    oom: int
    resources: Resources
    user_retries: int = 0

    @classmethod
    def of(cls, spec: TaskSpec) -> _Budgets:
        return cls(
            spec,
            user=spec.retry.count,
            system=spec.system_retries,
            oom=spec.oom.count if spec.oom else 0,
            resources=spec.resources,
        )

    def retry_delay(self, exc: BaseException, kind: str, aborting: bool) -> float | None:
        """Seconds to wait before retrying after this failure, or None: no retry."""
        if aborting or not failures.is_retryable(exc):
            return None
        if kind == failures.SYSTEM:
            if self.system <= 0:
                return None
            self.system -= 1
            return 0.0
        if kind == failures.OOM and self.spec.oom is not None:
            if self.oom <= 0:
                return None
            self.oom -= 1
            return 0.0
        if kind not in (failures.USER, failures.TIMEOUT, failures.OOM) or self.user <= 0:
            return None
        self.user -= 1
        if kind == failures.OOM:
            return 0.0
        self.user_retries += 1
        return self.spec.retry.delay(self.user_retries)


class Controller:
    """Runs the actions of one run in this process."""

    def __init__(
        self,
        store: Store,
        literals: LiteralStore,
        run_id: str,
        executor: Executor,
        loop: asyncio.AbstractEventLoop,
        prior_actions: Mapping[str, ActionRecord] | None = None,
        prior_attempts: list[AttemptRecord] | None = None,
    ) -> None:
        self.store = store
        self.literals = literals
        self.run_id = run_id
        self.executor = executor
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.journal = Journal(store, loop, gather_turns=executor.gather_turns)
        self.stats = Stats()
        self._prior: dict[str, ActionRecord] = dict(prior_actions or {})
        self.cache = OutputCache(store, literals, loop)
        self.deps = Dependencies()
        self.aborting = False
        # Actions running in this process, and the calls each action made that are
        # still running (cancelled when it ends).
        self._inflight: dict[str, _Running] = {}
        self._children: dict[str, set[_Running]] = {}
        # Actions that failed or were aborted here: a later call continues their attempts.
        self._ended: dict[str, ActionState] = {}
        if prior_actions or prior_attempts:
            self.journal.mark_persisted(
                set(self._prior), {(t.action_id, t.number) for t in prior_attempts or ()}
            )
            self._mark_lost(prior_attempts or [])

    def _mark_lost(self, prior_attempts: list[AttemptRecord]) -> None:
        # Attempts that were running when the previous driver died are lost:
        # a system failure, not the task's.
        now = time.time()
        for t in prior_attempts:
            if t.status in (RUNNING, QUEUED):
                failure = failures.Failure(
                    failures.SYSTEM, "WorkerLost", f"driver {t.worker} died during this attempt", ""
                )
                self.journal.put_attempt(
                    AttemptState(
                        t.action_id,
                        t.number,
                        t.run_id,
                        LOST,
                        t.task_version,
                        t.worker,
                        failure.to_json(),
                        None,
                        t.started_at,
                        now,
                    )
                )

    # -- calls -----------------------------------------------------------------------

    def prepare(
        self,
        spec: TaskSpec,
        inputs: Mapping[str, Any],
        parent: ActionContext,
        limiter: asyncio.Semaphore | None = None,
    ) -> PreparedCall:
        """Validate and encode a call and derive its action id (raises InputError)."""
        return prepare_call(self.run_id, spec, inputs, parent, limiter)

    def prepare_root(self, spec: TaskSpec, encoded_inputs: bytes) -> PreparedCall:
        ih = input_hash(encoded_inputs)
        aid = action_id(self.run_id, None, spec.name, ih, 0)
        return PreparedCall(spec, aid, encoded_inputs, ih, 0, None, None)

    def run_blocking(self, call: PreparedCall) -> Any:
        """Run a call from a worker thread (a sync task calling a task) and wait for it."""
        if threading.get_ident() == self.loop_thread:
            raise HeddleError(
                f"task {call.spec.name!r} is a sync task called from async code: "
                f"use `await {call.spec.name.rsplit('.', 1)[-1]}.aio(...)`"
            )
        return asyncio.run_coroutine_threadsafe(self.run(call), self.loop).result()

    async def run(self, call: PreparedCall) -> Any:
        """Run one call to completion and return its (decoded) output."""
        return call.spec.decode_output(await self.run_encoded(call))

    async def run_encoded(self, call: PreparedCall) -> bytes:
        """Run one call to completion and return its encoded output.

        A call whose action is still running in this process (started by an earlier
        attempt of the same parent, whose worker died) attaches to it instead of
        running it a second time. Children the action leaves running when it ends
        are cancelled (recorded as aborted).
        """
        aid = call.action_id
        running = self._inflight.get(aid)
        if running is not None:
            self.stats.adopted += 1
            try:
                return await running.join(self.loop)
            except _Abandoned:
                pass  # it was cancelled meanwhile: this call runs it again
        prior = self._prior.pop(aid, None) or self._ended.pop(aid, None)
        if (
            prior is not None
            and prior.status == SUCCEEDED
            and prior.output is not None
            and prior.task_version == call.spec.version
            and (out := await recorded_output(self, call, prior)) is not None
        ):
            self.stats.replayed += 1
            self.deps.finished(call.parent_id, call.action_id, call.spec, prior.deps)
            return out
        me = _Running(asyncio.current_task(), call.parent_id)
        self._inflight[aid] = me
        if me.parent is not None and me.task is not None:
            self._children.setdefault(me.parent, set()).add(me)
        try:
            state, key = self._new_state(call, prior)
            try:
                if key is None:
                    out = await self._run_attempts(call, state)
                else:
                    out = await self._run_cached(call, state, key)
            finally:
                # Whatever the outcome, the caller's output now depends on this task's code.
                self.deps.finished(call.parent_id, call.action_id, call.spec, state.deps)
        except BaseException as exc:
            me.finish(None, exc)
            raise
        else:
            me.finish(out, None)
            return out
        finally:
            del self._inflight[aid]
            if me.parent is not None:
                siblings = self._children.get(me.parent)
                if siblings is not None:
                    siblings.discard(me)
                    if not siblings:
                        del self._children[me.parent]
            self._cancel_orphans(aid)

    async def settle(self, within: float) -> None:
        """Wait (up to ``within`` seconds) for the actions still running here to end: after the
        root ends, its orphans are being cancelled and must be journalled as aborted."""
        deadline = self.loop.time() + within
        current = asyncio.current_task()
        while True:
            tasks = {r.task for r in self._inflight.values() if r.task is not None}
            tasks.discard(current)
            pending = [t for t in tasks if not t.done()]
            left = deadline - self.loop.time()
            if not pending or left <= 0:
                return
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=left)

    def _cancel_orphans(self, parent_id: str) -> None:
        """The action ended: cancel the calls it made that are still running (started
        and never awaited, or left behind by an attempt whose worker died)."""
        orphans = self._children.pop(parent_id, None)
        if not orphans:
            return
        current = asyncio.current_task()
        for child in orphans:
            if child.task is not None and child.task is not current and not child.task.done():
                self.stats.orphans_cancelled += 1
                child.task.cancel()

    def _new_state(
        self, call: PreparedCall, prior: ActionRecord | ActionState | None
    ) -> tuple[ActionState, str | None]:
        """The state of an action about to run, and its cache key (None: not cached)."""
        spec = call.spec
        now = time.time()
        state = ActionState(
            id=call.action_id,
            run_id=self.run_id,
            parent_id=call.parent_id,
            seq=call.seq,
            kind="task",
            task_name=spec.name,
            task_version=spec.version,
            group_name=call.group,
            status=QUEUED,
            attempts=prior.attempts if prior else 0,
            cached=0,
            cache_key=None,
            inputs=self.literals.to_literal(call.encoded_inputs),
            output=None,
            error=None,
            queued_at=prior.queued_at if prior else now,
            started_at=None,
            finished_at=None,
        )
        if prior is not None and prior.status == SUCCEEDED:
            # The task's code changed since it succeeded: it runs again, and the earlier
            # output is kept on the attempt that produced it.
            self.journal.put_attempt(
                AttemptState(
                    action_id=prior.id,
                    number=prior.attempts,
                    run_id=self.run_id,
                    status="superseded",
                    task_version=prior.task_version,
                    worker=None,
                    error=None,
                    output=prior.output,
                    started_at=prior.started_at or now,
                    finished_at=prior.finished_at,
                )
            )
        self.stats.started += 1
        key = self.cache.key_of(call)
        state.cache_key = key
        return state, key

    async def _run_cached(self, call: PreparedCall, state: ActionState, key: str) -> bytes:
        spec = call.spec
        assert spec.cache is not None
        if spec.cache.behavior == "auto":
            hit = await self.cache.find(key)
            if hit is not None:
                return await self._record_cache_hit(state, hit)
        return (await self.cache.compute(key, lambda: self._compute(call, state))).output

    # -- cache -----------------------------------------------------------------------

    async def _compute(self, call: PreparedCall, state: ActionState) -> CachedOutput:
        out = await self._run_attempts(call, state)
        return CachedOutput(out, state.deps, self.run_id, call.action_id)

    async def _record_cache_hit(self, state: ActionState, hit: CachedOutput) -> bytes:
        now = time.time()
        state.status = SUCCEEDED
        state.cached = 1
        state.output = self.literals.to_literal(hit.output)
        # Entries are written only by the action that computed the value: the source.
        state.source_run_id = hit.run_id
        state.source_action_id = hit.action_id
        state.deps = hit.deps
        state.started_at = now
        state.finished_at = now
        self.journal.put_action(state)
        await self.journal.durable()
        self.stats.cached += 1
        self.stats.succeeded += 1
        return hit.output

    # -- attempts --------------------------------------------------------------------

    async def _run_attempts(self, call: PreparedCall, state: ActionState) -> bytes:
        """Run attempts until one succeeds or every retry budget is spent."""
        spec = call.spec
        budgets = _Budgets.of(spec)
        self.journal.put_action(state)
        self.stats.queued += 1
        if call.limiter is not None:
            try:
                await admit(call)
            except HeddleTimeout as exc:
                # Timed out in the queue: it never ran, but it did fail.
                self.stats.queued -= 1
                state.status = FAILED
                state.error = failures.failure_of(exc).to_json()
                state.finished_at = time.time()
                self.journal.put_action(state)
                self.stats.failed += 1
                await self.journal.durable()
                raise
        try:
            while True:
                if self.aborting:
                    self.stats.queued -= 1
                    raise RunAbortedError(self.run_id)
                if state.attempts > 0:
                    # The body runs again (a retry, or a later call of a parent that
                    # failed): children that already succeeded are replayed, not re-run.
                    await self._load_children(call.action_id)
                attempt = Attempt(state.attempts + 1, budgets.resources)
                record = self._queue_attempt(call, state, attempt)
                ctx = ActionContext(self, self.run_id, call.action_id, spec.name)
                try:
                    out = await self.executor.execute(call, attempt, ctx)
                except asyncio.CancelledError:
                    self._attempt_aborted(state, record, attempt)
                    raise
                except Exception as exc:
                    await name_producer(self, call, exc)
                    delay = self._attempt_failed(call, state, record, attempt, budgets, exc)
                    if delay is None:
                        await self.journal.durable()
                        if not isinstance(exc, HeddleError):
                            exc.add_note(
                                f"(in heddle task {spec.name!r}, action {call.action_id}, "
                                f"attempt {state.attempts})"
                            )
                        raise
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                self._attempt_succeeded(call, state, record, attempt, out)
                await self.journal.durable()
                self.stats.succeeded += 1
                return out
        finally:
            if call.limiter is not None:
                call.limiter.release()

    def _attempt_aborted(self, state: ActionState, record: AttemptState, attempt: Attempt) -> None:
        self._leave_attempt(attempt)
        aborted = failures.failure_of(RunAbortedError(self.run_id), failures.ABORTED)
        self._finish_failed(state, record, attempt, aborted, ABORTED)
        self._ended[state.id] = state

    def _attempt_failed(
        self,
        call: PreparedCall,
        state: ActionState,
        record: AttemptState,
        attempt: Attempt,
        budgets: _Budgets,
        exc: Exception,
    ) -> float | None:
        """Journal a failed attempt; return the delay before the next attempt, or None
        when the action has failed for good."""
        spec = call.spec
        self._leave_attempt(attempt)
        failure = failures.failure_of(exc)
        delay = budgets.retry_delay(exc, failure.kind, self.aborting)
        if delay is not None:
            self.stats.retried += 1
            self.stats.queued += 1
            self._finish_attempt(record, attempt, FAILED, error=failure.to_json())
            self._requeue_action(state)
            if isinstance(exc, OOMError) and spec.oom is not None:
                budgets.resources = self._more_memory(spec, budgets.resources, exc)
            return delay
        self._finish_failed(state, record, attempt, failure, FAILED)
        self._ended[state.id] = state
        self.stats.failed += 1
        self.stats.failures.append(f"{spec.name}: {failure.type_name}: {failure.message}")
        return None

    def _attempt_succeeded(
        self,
        call: PreparedCall,
        state: ActionState,
        record: AttemptState,
        attempt: Attempt,
        out: bytes,
    ) -> None:
        self._leave_attempt(attempt)
        literal = self.literals.to_literal(out)
        now = time.time()
        state.status = SUCCEEDED
        state.output = literal
        state.finished_at = now
        if state.started_at is None:
            state.started_at = attempt.started_at or now
        state.deps = self.deps.close(call.action_id, attempt.deps)
        self.journal.put_action(state)
        self._finish_attempt(record, attempt, SUCCEEDED, now=now)
        if state.cache_key is not None:
            self.journal.put_cache(
                {
                    "key": state.cache_key,
                    "task_name": call.spec.name,
                    "output": literal,
                    "run_id": self.run_id,
                    "action_id": call.action_id,
                    "created_at": now,
                    "deps": state.deps,
                }
            )

    async def _load_children(self, parent_id: str) -> None:
        children = await asyncio.to_thread(self.store.actions_of_parent, self.run_id, parent_id)
        for child in children:
            if child.id not in self._inflight:
                self._prior.setdefault(child.id, child)

    def _queue_attempt(
        self, call: PreparedCall, state: ActionState, attempt: Attempt
    ) -> AttemptState:
        """Journal a new attempt as queued; the executor reports when its body starts."""
        now = time.time()
        state.attempts = attempt.number
        record = AttemptState(
            action_id=call.action_id,
            number=attempt.number,
            run_id=self.run_id,
            status=QUEUED,
            task_version=call.spec.version,
            worker=None,
            error=None,
            output=None,
            started_at=None,
            finished_at=None,
            queued_at=now,
        )
        attempt.owner, attempt.state, attempt.record = self, state, record
        self.journal.put_action(state)
        self.journal.put_attempt(record)
        return record

    def attempt_started(self, attempt: Attempt) -> None:
        """The executor started the attempt's body: the action runs from now on."""
        state, record = attempt.state, attempt.record
        assert state is not None and record is not None and attempt.started_at is not None
        self.stats.queued -= 1
        self.stats.running += 1
        state.status = RUNNING
        if state.started_at is None:
            state.started_at = attempt.started_at
        record.status = RUNNING
        record.started_at = attempt.started_at
        record.worker = attempt.worker
        self.journal.put_action(state)
        self.journal.put_attempt(record)

    def attempt_requeued(self, attempt: Attempt) -> None:
        """A body reported started never ran (taken back from a worker): queued again."""
        state, record = attempt.state, attempt.record
        assert state is not None and record is not None
        self.stats.running -= 1
        self.stats.queued += 1
        record.status = QUEUED
        record.started_at = None
        self._requeue_action(state)
        self.journal.put_attempt(record)

    def _requeue_action(self, state: ActionState) -> None:
        """Between attempts (or a body taken back before it ran) the action is queued."""
        if state.status == RUNNING:
            state.status = QUEUED
            self.journal.put_action(state)

    def _leave_attempt(self, attempt: Attempt) -> None:
        """The attempt is over: it leaves the running (or queued) count."""
        if attempt.started_at is None:
            self.stats.queued -= 1
        else:
            self.stats.running -= 1

    def _finish_attempt(
        self,
        record: AttemptState,
        attempt: Attempt,
        status: str,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        record.status = status
        record.error = error
        record.worker = attempt.worker
        record.cpu_seconds = attempt.cpu_seconds
        record.peak_rss = attempt.peak_rss
        record.started_at = attempt.started_at
        record.finished_at = now or time.time()
        self.journal.put_attempt(record)

    def _finish_failed(
        self,
        state: ActionState,
        record: AttemptState,
        attempt: Attempt,
        failure: failures.Failure,
        status: str,
    ) -> None:
        now = time.time()
        state.status = status
        state.error = failure.to_json()
        state.finished_at = now
        if state.started_at is None:
            state.started_at = attempt.started_at
        self.journal.put_action(state)
        self._finish_attempt(record, attempt, status, error=state.error, now=now)

    @staticmethod
    def _more_memory(spec: TaskSpec, resources: Resources, exc: OOMError) -> Resources:
        assert spec.oom is not None
        current = resources.memory_bytes or exc.limit_bytes or exc.peak_bytes or 2**30
        return dataclasses.replace(resources, memory=spec.oom.next_memory(current))

    # -- recorded steps (traces, durable sleep and clock) -----------------------------

    def begin_step(
        self,
        parent: ActionContext,
        kind: str,
        name: str,
        encoded_inputs: bytes,
        version: str = "",
    ) -> tuple[ActionState, bytes | None]:
        """Derive a step's id; return its state and its recorded output if it already ran."""
        ih = input_hash(encoded_inputs)
        n, seq = parent.next_call(f"{kind}:{name}", ih)
        return self.open_step(
            parent.action_id, seq, kind, name, encoded_inputs, ih, n, current_group.get(), version
        )

    def open_step(
        self,
        parent_id: str,
        seq: int,
        kind: str,
        name: str,
        encoded_inputs: bytes,
        ih: str,
        n: int,
        group: str | None,
        version: str = "",
    ) -> tuple[ActionState, bytes | None]:
        """``version``: a trace's version (its code), which its caller's cache entry records."""
        aid = action_id(self.run_id, parent_id, f"{kind}:{name}", ih, n)
        prior = self._prior.pop(aid, None)
        if prior is not None and prior.status == SUCCEEDED and prior.output is not None:
            self.stats.replayed += 1
            if kind == TRACE:
                # The recorded value came from the code of then, whatever it is now.
                self.deps.called_trace(parent_id, name, prior.task_version)
            return _state_of(prior), self.literals.from_literal(prior.output)
        if kind == TRACE:
            self.deps.called_trace(parent_id, name, version)
        now = time.time()
        state = ActionState(
            id=aid,
            run_id=self.run_id,
            parent_id=parent_id,
            seq=seq,
            kind=kind,
            task_name=name,
            task_version=version,
            group_name=group,
            status=RUNNING,
            attempts=(prior.attempts if prior else 0) + 1,
            cached=0,
            cache_key=None,
            inputs=self.literals.to_literal(encoded_inputs),
            output=prior.output if prior else None,
            error=None,
            queued_at=now,
            started_at=now,
            finished_at=None,
        )
        return state, None

    def step_prior_output(self, state: ActionState) -> bytes | None:
        """For a step that started before a crash but did not finish (durable sleep)."""
        return None if state.output is None else self.literals.from_literal(state.output)

    def note_step(self, state: ActionState) -> None:
        """Journal a step as running, without waiting (call on the loop's thread)."""
        self.journal.put_action(state)

    def _apply_step(
        self, state: ActionState, out: bytes | None, failure: failures.Failure | None, final: bool
    ) -> None:
        now = time.time()
        if failure is not None:
            state.status = FAILED
            state.error = failure.to_json()
            state.finished_at = now
        else:
            if out is not None:
                state.output = self.literals.to_literal(out)
            if final:
                state.status = SUCCEEDED
                state.finished_at = now
        self.journal.put_action(state)

    async def record_step(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        """Durably record a step's output (or failure)."""
        self._apply_step(state, out, None if exc is None else failures.failure_of(exc), final)
        await self.journal.durable()

    async def record_step_failure(
        self, state: ActionState, out: bytes | None, failure_json: str | None, final: bool
    ) -> None:
        """record_step for a step whose failure was already serialised (in a worker)."""
        failure = None if failure_json is None else failures.Failure.from_json(failure_json)
        self._apply_step(state, out, failure, final)
        await self.journal.durable()

    def record_step_sync(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        """record_step for sync code, on the loop's thread or on a worker thread."""
        if self.on_loop_thread():
            # Sync code on the loop's thread cannot await: write the batch right now.
            self._apply_step(state, out, None if exc is None else failures.failure_of(exc), final)
            self.journal.flush_now()
        else:
            self.call_on_loop(lambda: self.record_step(state, out, exc, final=final))

    def call_on_loop(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run a coroutine on the controller's loop from a worker thread and wait for it."""

        async def runner() -> Any:
            return await make()

        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result()

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.loop_thread


def _state_of(r: ActionRecord) -> ActionState:
    return ActionState(
        id=r.id,
        run_id=r.run_id,
        parent_id=r.parent_id,
        seq=r.seq,
        kind=r.kind,
        task_name=r.task_name,
        task_version=r.task_version,
        group_name=r.group_name,
        status=r.status,
        attempts=r.attempts,
        cached=int(r.cached),
        cache_key=r.cache_key,
        inputs=r.inputs,
        output=r.output,
        error=r.error,
        queued_at=r.queued_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        source_run_id=r.source_run_id,
        source_action_id=r.source_action_id,
        deps=r.deps,
    )
