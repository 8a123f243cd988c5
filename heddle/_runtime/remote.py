"""The controller as a worker process sees it: every durable decision is asked of the driver.

A task body running in a worker derives its children's ids locally (the counters
belong to the running action), then sends each call, trace and durable step to the
driver's controller, which stays the single writer of the run's log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from heddle._errors import HeddleError
from heddle._runtime import failures
from heddle._runtime.calls import PreparedCall, admit, prepare_call
from heddle._runtime.context import ActionContext, current_group
from heddle._runtime.ids import input_hash
from heddle._runtime.journal import ActionState
from heddle._runtime.spec import TaskSpec

# Message kinds. Worker -> driver: READY, DONE, CALL, CANCEL, STEP, SKIPPED.
# Driver -> worker: RUN, REPLY, UNQUEUE, STOP.
# Either side may send (BATCH, [message, ...]): what one turn of its loop produced.
BATCH = "batch"
READY = "ready"
DONE = "done"
CALL = "call"
CANCEL = "cancel"  # the body stopped awaiting a call it made (the call is cancelled)
STEP = "step"
RUN = "run"
REPLY = "reply"
UNQUEUE = "unqueue"
SKIPPED = "skipped"
STOP = "stop"


class RemoteController:
    """Stands in for the Controller inside a worker process (one running action at a time)."""

    def __init__(
        self,
        send: Callable[[tuple[Any, ...]], None],
        run_id: str,
        job_id: int,
        loop: asyncio.AbstractEventLoop,
        ids: Iterator[int] | None = None,
    ) -> None:
        self._send = send
        self.run_id = run_id
        self.job_id = job_id
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.aborting = False
        # Request ids come from the worker's counter, unique across its jobs: a late
        # reply meant for an earlier job can never resolve a request of this one.
        self._ids = ids if ids is not None else itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[tuple[bool, Any]]] = {}
        # Calls made by async code on the worker's loop: their futures live on the loop,
        # and the calls of one loop turn go to the driver in one message.
        self._pending_async: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._outbox: list[tuple[Any, ...]] = []
        self._prior_outputs: dict[str, bytes | None] = {}

    # -- transport -------------------------------------------------------------------

    def _request(self, *message: Any) -> concurrent.futures.Future[tuple[bool, Any]]:
        req_id = next(self._ids)
        fut: concurrent.futures.Future[tuple[bool, Any]] = concurrent.futures.Future()
        self._pending[req_id] = fut
        self._send((message[0], self.job_id, req_id, *message[1:]))
        return fut

    def _post_async(self, message: tuple[Any, ...]) -> tuple[int, asyncio.Future[tuple[bool, Any]]]:
        """On the loop's thread: queue a request, sent with the others of this loop turn."""
        req_id = next(self._ids)
        fut: asyncio.Future[tuple[bool, Any]] = self.loop.create_future()
        self._pending_async[req_id] = fut
        if not self._outbox:
            self.loop.call_soon(self.flush)
        self._outbox.append((message[0], self.job_id, req_id, *message[1:]))
        return req_id, fut

    def _cancel_call(self, req_id: int) -> None:
        """The body stopped awaiting call ``req_id``: the driver cancels it."""
        self._pending_async.pop(req_id, None)
        self._outbox.append((CANCEL, self.job_id, req_id))
        if len(self._outbox) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        out, self._outbox = self._outbox, []
        if out:
            self._send(out[0] if len(out) == 1 else (BATCH, out))

    def deliver(self, replies: list[tuple[int, bool, Any]]) -> None:
        """Called by the worker's reader thread with the driver's replies: the loop's
        futures are resolved in one hop to the loop, the others right here."""
        to_loop = []
        for req_id, ok, payload in replies:
            fut = self._pending.pop(req_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result((ok, payload))
            elif req_id in self._pending_async:
                to_loop.append((req_id, ok, payload))
        if to_loop:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the job is over
                self.loop.call_soon_threadsafe(self._resolve_on_loop, to_loop)

    def _resolve_on_loop(self, replies: list[tuple[int, bool, Any]]) -> None:
        for req_id, ok, payload in replies:
            fut = self._pending_async.pop(req_id, None)
            if fut is not None and not fut.done():
                fut.set_result((ok, payload))

    def fail_all(self, exc: BaseException) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()
        for afut in self._pending_async.values():
            if not afut.done():
                afut.set_exception(exc)
        self._pending_async.clear()

    # -- calls -----------------------------------------------------------------------

    def prepare(
        self,
        spec: TaskSpec,
        inputs: Mapping[str, Any],
        parent: ActionContext,
        limiter: asyncio.Semaphore | None = None,
    ) -> PreparedCall:
        return prepare_call(self.run_id, spec, inputs, parent, limiter)

    async def run(self, call: PreparedCall) -> Any:
        return call.spec.decode_output(await self.run_encoded(call))

    async def run_encoded(self, call: PreparedCall) -> bytes:
        if call.limiter is not None:
            await admit(call)
        try:
            req_id, reply = self._post_async(self._call_message(call))
            try:
                ok, payload = await reply
            except asyncio.CancelledError:
                self._cancel_call(req_id)
                raise
        finally:
            if call.limiter is not None:
                call.limiter.release()
        return self._output_of(call, ok, payload)

    @staticmethod
    def _call_message(call: PreparedCall) -> tuple[Any, ...]:
        return (
            CALL,
            call.spec.ref.get(),
            call.action_id,
            call.encoded_inputs,
            call.in_hash,
            call.seq,
            call.parent_id,
            call.group,
        )

    def _send_call(self, call: PreparedCall) -> concurrent.futures.Future[tuple[bool, Any]]:
        return self._request(*self._call_message(call))

    def _output_of(self, call: PreparedCall, ok: bool, payload: Any) -> bytes:
        """The encoded output the driver sent back, or the child's error raised here."""
        if ok:
            assert isinstance(payload, bytes)
            return payload
        raise failures.rebuild(
            failures.Failure.from_json(payload), call.spec.name, call.action_id, self.run_id
        )

    def run_blocking(self, call: PreparedCall) -> Any:
        if self.on_loop_thread():
            raise HeddleError(
                f"task {call.spec.name!r} is a sync task called from async code: "
                f"use `await {call.spec.name.rsplit('.', 1)[-1]}.aio(...)`"
            )
        if self.loop.is_running():  # called from a thread the task started
            return asyncio.run_coroutine_threadsafe(self.run(call), self.loop).result()
        # A sync task body: ask the driver and wait; the reader thread delivers the reply.
        ok, payload = self._send_call(call).result()
        return call.spec.decode_output(self._output_of(call, ok, payload))

    # -- recorded steps --------------------------------------------------------------

    def begin_step(
        self,
        parent: ActionContext,
        kind: str,
        name: str,
        encoded_inputs: bytes,
        version: str = "",
    ) -> tuple[ActionState, bytes | None]:
        ih = input_hash(encoded_inputs)
        n, seq = parent.next_call(f"{kind}:{name}", ih)
        ok, payload = self._request(
            STEP,
            "open",
            (
                parent.action_id,
                seq,
                kind,
                name,
                encoded_inputs,
                ih,
                n,
                current_group.get(),
                version,
            ),
        ).result()
        if not ok:
            raise HeddleError(f"the driver could not open step {name!r}: {payload}")
        state, out, prior = payload
        self._prior_outputs[state.id] = prior
        return state, out

    def step_prior_output(self, state: ActionState) -> bytes | None:
        return self._prior_outputs.get(state.id)

    def note_step(self, state: ActionState) -> None:
        self._send((STEP, self.job_id, 0, "note", (state,)))

    def _record(
        self, state: ActionState, out: bytes | None, exc: BaseException | None, final: bool
    ) -> concurrent.futures.Future[tuple[bool, Any]]:
        failure = None if exc is None else failures.failure_of(exc).to_json()
        return self._request(STEP, "record", (state, out, failure, final))

    async def record_step(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        await asyncio.wrap_future(self._record(state, out, exc, final))

    def record_step_sync(
        self,
        state: ActionState,
        out: bytes | None = None,
        exc: BaseException | None = None,
        *,
        final: bool = True,
    ) -> None:
        self._record(state, out, exc, final).result()

    def call_on_loop(self, make: Callable[[], Awaitable[Any]]) -> Any:
        async def runner() -> Any:
            return await make()

        if not self.loop.is_running() and threading.get_ident() == self.loop_thread:
            # A sync task body on the worker's main thread: its loop is free to use.
            return self.loop.run_until_complete(runner())
        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result()

    def on_loop_thread(self) -> bool:
        return self.loop.is_running() and threading.get_ident() == self.loop_thread
