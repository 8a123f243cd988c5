"""heddle.trace: record a step inside a task so that recovery replays it instead of re-running it.

Use it for expensive or non-deterministic calls (an LLM, an external API): the
recorded output is returned on replay, so the task sees the same value again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from heddle._runtime.context import current_action
from heddle._runtime.controller import Controller
from heddle._runtime.journal import ActionState
from heddle._sdk.signature import CallCodec

P = ParamSpec("P")
R = TypeVar("R")


def record_sync(
    controller: Controller,
    state: ActionState,
    out: bytes | None = None,
    exc: BaseException | None = None,
    final: bool = True,
) -> None:
    """Durably record a step from sync code, on the loop's thread or a worker thread."""
    if controller.on_loop_thread():
        # Sync code on the loop's thread cannot await: write the batch right now.
        if exc is not None or out is not None or final:
            _apply(controller, state, out, exc, final)
        controller.journal.put_action(state)
        controller.journal.flush_now()
    else:
        controller.call_on_loop(lambda: controller.record_step(state, out, exc, final=final))


def _apply(
    controller: Controller,
    state: ActionState,
    out: bytes | None,
    exc: BaseException | None,
    final: bool,
) -> None:
    import time

    from heddle._runtime import failures

    now = time.time()
    if exc is not None:
        state.status = "failed"
        state.error = failures.failure_of(exc).to_json()
        state.finished_at = now
        return
    if out is not None:
        state.output = controller.literals.to_literal(out)
    if final:
        state.status = "succeeded"
        state.finished_at = now


def trace(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a sync or async function whose result should be recorded and replayed."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    codec = CallCodec(fn, f"trace {fn.__qualname__}")

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = current_action.get()
            if ctx is None:
                return await fn(*args, **kwargs)
            c = ctx.controller
            state, out = c.begin_step(
                ctx, "trace", name, codec.encode_inputs(codec.bind(args, kwargs))
            )
            if out is not None:
                return codec.decode_output(out)
            c.journal.put_action(state)
            try:
                result = await fn(*args, **kwargs)
                out = codec.encode_output(result)
            except Exception as exc:
                await c.record_step(state, exc=exc)
                raise
            await c.record_step(state, out)
            return codec.decode_output(out)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = current_action.get()
        if ctx is None:
            return fn(*args, **kwargs)
        c = ctx.controller
        state, out = c.begin_step(ctx, "trace", name, codec.encode_inputs(codec.bind(args, kwargs)))
        if out is not None:
            return codec.decode_output(out)
        try:
            result = fn(*args, **kwargs)
            out = codec.encode_output(result)
        except Exception as exc:
            record_sync(c, state, exc=exc)
            raise
        record_sync(c, state, out)
        return codec.decode_output(out)

    return sync_wrapper
