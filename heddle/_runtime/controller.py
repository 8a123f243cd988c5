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
    """One try of an action, as the executor sees it (and reports back on)."""

    number: int
    resources: Resources
    worker: str = WORKER
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    log_key: str | None = None
    # What the body called, when its children ran under a controller of their own (in a
    # Ray worker): JSON dependencies for the action's cache entry.
    deps: str | None = None


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
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cached: int = 0
    replayed: int = 0
    # The latest failures, for live views (older ones drop off).
    failures: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=50))


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
        """Run one call to completion and return its encoded output."""
        spec = call.spec
        prior = self._prior.pop(call.action_id, None)
        if (
            prior is not None
            and prior.status == SUCCEEDED
            and prior.output is not None
            and prior.task_version == spec.version
        ):
            self.stats.replayed += 1
            self.deps.finished(call.parent_id, call.action_id, spec, prior.deps)
            return self.literals.from_literal(prior.output)
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
                    prior.id,
                    prior.attempts,
                    self.run_id,
                    "superseded",
                    prior.task_version,
                    None,
                    None,
                    prior.output,
                    prior.started_at or now,
                    prior.finished_at,
                )
            )
        self.stats.started += 1
        key = self.cache.key_of(call)
        try:
            if key is None:
                return await self._run_attempts(call, state)
            state.cache_key = key
            assert spec.cache is not None
            if spec.cache.behavior == "auto":
                hit = await self.cache.find(key)
                if hit is not None:
                    return await self._record_cache_hit(state, hit)
            return (await self.cache.compute(key, lambda: self._compute(call, state))).output
        finally:
            # Whatever the outcome, the caller's output now depends on this task's code.
            self.deps.finished(call.parent_id, call.action_id, spec, state.deps)

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
        # Separate budgets: user errors and timeouts share the task's retries; lost
        # workers have the system budget; OOMs have the OOMRetry budget when one is set.
        budgets = {
            failures.USER: spec.retry.count,
            failures.SYSTEM: spec.system_retries,
            failures.OOM: spec.oom.count if spec.oom else 0,
        }
        user_retries = 0
        resources = spec.resources
        if call.limiter is not None:
            self.journal.put_action(state)
            try:
                await admit(call)
            except HeddleTimeout as exc:
                # Timed out in the queue: it never ran, but it did fail.
                state.status = FAILED
                state.error = failures.failure_of(exc).to_json()
                state.finished_at = time.time()
                self.journal.put_action(state)
                self.stats.failed += 1
                await self.journal.durable()
                raise
        first_attempt = state.attempts + 1
        try:
            while True:
                if self.aborting:
                    raise RunAbortedError(self.run_id)
                if state.attempts + 1 > first_attempt:
                    # A retry re-runs the body: children that already succeeded in an
                    # earlier attempt are replayed, never run again.
                    await self._load_children(call.action_id)
                attempt = Attempt(state.attempts + 1, resources)
                record = self._start_attempt(call, state, attempt)
                ctx = ActionContext(self, self.run_id, call.action_id, spec.name)
                try:
                    out = await self.executor.execute(call, attempt, ctx)
                except asyncio.CancelledError:
                    self.stats.running -= 1
                    aborted = failures.failure_of(RunAbortedError(self.run_id), failures.ABORTED)
                    self._finish_failed(state, record, attempt, aborted, ABORTED)
                    raise
                except Exception as exc:
                    self.stats.running -= 1
                    failure = failures.failure_of(exc)
                    kind = failure.kind
                    budget = kind
                    if kind == failures.TIMEOUT or (kind == failures.OOM and spec.oom is None):
                        budget = failures.USER
                    if (
                        failures.is_retryable(exc)
                        and budgets.get(budget, 0) > 0
                        and not self.aborting
                    ):
                        budgets[budget] -= 1
                        self.stats.retried += 1
                        self._finish_attempt(record, attempt, FAILED, error=failure.to_json())
                        if isinstance(exc, OOMError) and spec.oom is not None:
                            resources = self._more_memory(spec, resources, exc)
                        if kind in (failures.USER, failures.TIMEOUT):
                            user_retries += 1
                            delay = spec.retry.delay(user_retries)
                            if delay > 0:
                                await asyncio.sleep(delay)
                        continue
                    self._finish_failed(state, record, attempt, failure, FAILED)
                    self.stats.failed += 1
                    self.stats.failures.append(
                        f"{spec.name}: {failure.type_name}: {failure.message}"
                    )
                    await self.journal.durable()
                    if not isinstance(exc, HeddleError):
                        exc.add_note(
                            f"(in heddle task {spec.name!r}, action {call.action_id}, "
                            f"attempt {state.attempts})"
                        )
                    raise
                self.stats.running -= 1
                literal = self.literals.to_literal(out)
                now = time.time()
                state.status = SUCCEEDED
                state.output = literal
                state.finished_at = now
                state.deps = self.deps.close(call.action_id, attempt.deps)
                self.journal.put_action(state)
                self._finish_attempt(record, attempt, SUCCEEDED, now=now)
                if state.cache_key is not None:
                    self.journal.put_cache(
                        {
                            "key": state.cache_key,
                            "task_name": spec.name,
                            "output": literal,
                            "run_id": self.run_id,
                            "action_id": call.action_id,
                            "created_at": now,
                            "deps": state.deps,
                        }
                    )
                await self.journal.durable()
                self.stats.succeeded += 1
                return out
        finally:
            if call.limiter is not None:
                call.limiter.release()

    async def _load_children(self, parent_id: str) -> None:
        children = await asyncio.to_thread(self.store.actions_of_parent, self.run_id, parent_id)
        for child in children:
            if child.status == SUCCEEDED:
                self._prior.setdefault(child.id, child)

    def _start_attempt(
        self, call: PreparedCall, state: ActionState, attempt: Attempt
    ) -> AttemptState:
        now = time.time()
        state.attempts = attempt.number
        state.status = RUNNING
        state.started_at = now
        record = AttemptState(
            call.action_id,
            attempt.number,
            self.run_id,
            RUNNING,
            call.spec.version,
            attempt.worker,
            None,
            None,
            now,
            None,
        )
        self.journal.put_action(state)
        self.journal.put_attempt(record)
        self.stats.running += 1
        return record

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
            group_name=current_group.get(),
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
