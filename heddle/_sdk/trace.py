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
from heddle._sdk.signature import CallCodec

P = ParamSpec("P")
R = TypeVar("R")


def trace(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a sync or async function whose result should be recorded and replayed."""
    # A script's module is "__main__" in the driver and "__mp_main__" in a worker
    # process: one name for both, so a trace's id does not depend on where it ran.
    module = "__main__" if fn.__module__ == "__mp_main__" else fn.__module__
    name = f"{module}.{fn.__qualname__}"
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
            c.note_step(state)
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
            c.record_step_sync(state, exc=exc)
            raise
        c.record_step_sync(state, out)
        return codec.decode_output(out)

    return sync_wrapper
