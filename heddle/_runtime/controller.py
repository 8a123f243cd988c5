"""The controller: turns task calls into durable actions.

For each call it derives the action id, replays a recorded success, serves a
cache hit, or runs the task through the executor with retries and timeouts,
journalling every state change before acting on it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from heddle._errors import HeddleError, RunAbortedError
from heddle._runtime import failures
from heddle._runtime.context import ActionContext, current_group
from heddle._runtime.ids import action_id, cache_key, input_hash
from heddle._runtime.journal import ActionState, AttemptState, Journal
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import TaskSpec
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


class Executor(Protocol):
    """Runs one attempt of an action's body and returns its result."""

    name: str

    async def execute(self, spec: TaskSpec, inputs: dict[str, Any], ctx: ActionContext) -> Any: ...

    def shutdown(self) -> None: ...


@dataclass(slots=True)
class PreparedCall:
    """A validated call with its derived id, ready to run."""

    spec: TaskSpec
    action_id: str
    encoded_inputs: bytes
    in_hash: str
    seq: int
    parent_id: str | None
    group: str | None
    limiter: asyncio.Semaphore | None = None


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
    failures: list[str] = field(default_factory=list)


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
        self.journal = Journal(store, loop)
        self.stats = Stats()
        self._prior: dict[str, ActionRecord] = dict(prior_actions or {})
        self._inflight_cache: dict[str, asyncio.Future[bytes]] = {}
        self._cache_wanted: dict[str, list[asyncio.Future[bytes | None]]] = {}
        self.aborting = False
        if prior_actions or prior_attempts:
            self.journal.mark_persisted(
                set(self._prior), {(t.action_id, t.number) for t in prior_attempts or ()}
            )
            now = time.time()
            # Attempts that were running when the previous driver died are lost:
            # that is a system failure, not the task's.
            for t in prior_attempts or ():
                if t.status in (RUNNING, QUEUED):
                    self.journal.put_attempt(
                        AttemptState(
                            t.action_id,
                            t.number,
                            t.run_id,
                            LOST,
                            t.task_version,
                            t.worker,
                            failures.Failure(
                                failures.SYSTEM,
                                "WorkerLost",
                                f"driver {t.worker} died during this attempt",
                                "",
                            ).to_json(),
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
        encoded = spec.encode_inputs(inputs)
        ih = input_hash(encoded)
        n, seq = parent.next_call(spec.name, ih)
        aid = action_id(self.run_id, parent.action_id, spec.name, ih, n)
        return PreparedCall(
            spec, aid, encoded, ih, seq, parent.action_id, current_group.get(), limiter
        )

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
        spec = call.spec
        prior = self._prior.pop(call.action_id, None)
        if (
            prior is not None
            and prior.status == SUCCEEDED
            and prior.output is not None
            and prior.task_version == spec.version
        ):
            self.stats.replayed += 1
            return spec.decode_output(self.literals.from_literal(prior.output))
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
        key = self._cache_key(call)
        if key is not None:
            state.cache_key = key
            assert spec.cache is not None
            if spec.cache.behavior == "auto":
                hit = await self._cache_lookup(key)
                if hit is not None:
                    return spec.decode_output(await self._record_cache_hit(state, hit))
                pending = self._inflight_cache.get(key)
                if pending is not None:
                    try:
                        hit = await asyncio.shield(pending)
                    except Exception:
                        hit = None  # the first computation failed: compute our own
                    if hit is not None:
                        return spec.decode_output(await self._record_cache_hit(state, hit))
            mine: asyncio.Future[bytes] = self.loop.create_future()
            self._inflight_cache[key] = mine
            try:
                out = await self._run_attempts(call, state)
                mine.set_result(out)
            except BaseException as exc:
                mine.set_exception(exc)
                mine.exception()  # mark retrieved: waiters may not exist
                raise
            finally:
                if self._inflight_cache.get(key) is mine:
                    del self._inflight_cache[key]
        else:
            out = await self._run_attempts(call, state)
        return spec.decode_output(out)

    def _cache_key(self, call: PreparedCall) -> str | None:
        cache = call.spec.cache
        if cache is None:
            return None
        in_hash = call.in_hash
        if cache.ignored_inputs:
            # Inputs are encoded as one list in parameter order: drop the ignored positions.
            names = call.spec.param_names
            values = msgspec.msgpack.decode(call.encoded_inputs)
            kept = [
                v for name, v in zip(names, values, strict=True) if name not in cache.ignored_inputs
            ]
            in_hash = input_hash(msgspec.msgpack.encode(kept))
        return cache_key(call.spec.name, cache.version or call.spec.version, in_hash)

    async def _cache_lookup(self, key: str) -> bytes | None:
        """Look a key up in the cache; lookups made in one loop turn share one query."""
        fut: asyncio.Future[bytes | None] = self.loop.create_future()
        if not self._cache_wanted:
            self.loop.call_soon(self._read_cache)
        self._cache_wanted.setdefault(key, []).append(fut)
        literal = await fut
        return None if literal is None else self.literals.from_literal(literal)

    def _read_cache(self) -> None:
        wanted, self._cache_wanted = self._cache_wanted, {}
        try:
            found = self.store.cache_get_many(list(wanted))
        except Exception as exc:
            for futs in wanted.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for key, futs in wanted.items():
            for f in futs:
                if not f.done():
                    f.set_result(found.get(key))

    async def _record_cache_hit(self, state: ActionState, out: bytes) -> Any:
        now = time.time()
        state.status = SUCCEEDED
        state.cached = 1
        state.output = self.literals.to_literal(out)
        state.started_at = now
        state.finished_at = now
        self.journal.put_action(state)
        await self.journal.durable()
        self.stats.cached += 1
        self.stats.succeeded += 1
        return out

    async def _run_attempts(self, call: PreparedCall, state: ActionState) -> bytes:
        """Run attempts until one succeeds or the retry budget is spent; return encoded output."""
        spec = call.spec
        retries_left = spec.retry.count
        retry_number = 0
        if call.limiter is not None:
            self.journal.put_action(state)
            await self._admit(call)
        try:
            while True:
                if self.aborting:
                    raise RunAbortedError(self.run_id)
                now = time.time()
                state.attempts += 1
                state.status = RUNNING
                state.started_at = now
                attempt = AttemptState(
                    call.action_id,
                    state.attempts,
                    self.run_id,
                    RUNNING,
                    spec.version,
                    WORKER,
                    None,
                    None,
                    now,
                    None,
                )
                self.journal.put_action(state)
                self.journal.put_attempt(attempt)
                self.stats.running += 1
                ctx = ActionContext(self, self.run_id, call.action_id, spec.name)
                try:
                    inputs = spec.decode_inputs(call.encoded_inputs)
                    result = await self.executor.execute(spec, inputs, ctx)
                    out = spec.encode_output(result)
                except asyncio.CancelledError:
                    self.stats.running -= 1
                    self._finish_failed(
                        state,
                        attempt,
                        failures.failure_of(RunAbortedError(self.run_id), failures.ABORTED),
                        ABORTED,
                    )
                    raise
                except Exception as exc:
                    self.stats.running -= 1
                    failure = failures.failure_of(exc)
                    if failures.is_retryable(exc) and retries_left > 0 and not self.aborting:
                        retries_left -= 1
                        retry_number += 1
                        self.stats.retried += 1
                        attempt.status = FAILED
                        attempt.error = failure.to_json()
                        attempt.finished_at = time.time()
                        self.journal.put_attempt(attempt)
                        delay = spec.retry.delay(retry_number)
                        if delay > 0:
                            await asyncio.sleep(delay)
                        continue
                    self._finish_failed(state, attempt, failure, FAILED)
                    self.stats.failed += 1
                    if len(self.stats.failures) < 50:
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
                attempt.status = SUCCEEDED
                attempt.finished_at = now
                self.journal.put_action(state)
                self.journal.put_attempt(attempt)
                if state.cache_key is not None:
                    self.journal.put_cache(
                        {
                            "key": state.cache_key,
                            "task_name": spec.name,
                            "output": literal,
                            "run_id": self.run_id,
                            "action_id": call.action_id,
                            "created_at": now,
                        }
                    )
                await self.journal.durable()
                self.stats.succeeded += 1
                return out
        finally:
            if call.limiter is not None:
                call.limiter.release()

    async def _admit(self, call: PreparedCall) -> None:
        """Wait for a concurrency slot, within the task's max queued time."""
        assert call.limiter is not None
        timeout = call.spec.timeout.queued_seconds if call.spec.timeout else None
        if timeout is None:
            await call.limiter.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await call.limiter.acquire()
        except TimeoutError:
            from heddle._errors import TimeoutError as HeddleTimeout

            raise HeddleTimeout(call.spec.name, timeout, phase="queued") from None

    def _finish_failed(
        self, state: ActionState, attempt: AttemptState, failure: failures.Failure, status: str
    ) -> None:
        now = time.time()
        state.status = status
        state.error = failure.to_json()
        state.finished_at = now
        attempt.status = status
        attempt.error = state.error
        attempt.finished_at = now
        self.journal.put_action(state)
        self.journal.put_attempt(attempt)

    # -- recorded steps (traces, durable sleep and clock) -----------------------------

    def begin_step(
        self, parent: ActionContext, kind: str, name: str, encoded_inputs: bytes
    ) -> tuple[ActionState, bytes | None]:
        """Derive a step's id; return its state and its recorded output if it already ran."""
        ih = input_hash(encoded_inputs)
        n, seq = parent.next_call(f"{kind}:{name}", ih)
        aid = action_id(self.run_id, parent.action_id, f"{kind}:{name}", ih, n)
        prior = self._prior.pop(aid, None)
        if prior is not None and prior.status == SUCCEEDED and prior.output is not None:
            self.stats.replayed += 1
            return _state_of(prior), self.literals.from_literal(prior.output)
        now = time.time()
        state = ActionState(
            id=aid,
            run_id=self.run_id,
            parent_id=parent.action_id,
            seq=seq,
            kind=kind,
            task_name=name,
            task_version="",
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

    async def record_step(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        now = time.time()
        if exc is not None:
            state.status = FAILED
            state.error = failures.failure_of(exc).to_json()
            state.finished_at = now
        else:
            if out is not None:
                state.output = self.literals.to_literal(out)
            if final:
                state.status = SUCCEEDED
                state.finished_at = now
        self.journal.put_action(state)
        await self.journal.durable()

    def record_step_blocking(
        self, state: ActionState, out: bytes | None = None, exc: BaseException | None = None
    ) -> None:
        self.call_on_loop(lambda: self.record_step(state, out, exc))

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
    )
