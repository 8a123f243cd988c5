"""heddle.durable: sleep and clock reads that are recorded like traces.

A run that slept for an hour and crashed does not sleep again on recovery, and
``now()`` returns the same instant on replay as on the first run.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import msgspec

from heddle._errors import ConfigError
from heddle._runtime.context import ActionContext, current_action
from heddle._runtime.journal import ActionState

_ENC = msgspec.msgpack.Encoder()


def _seconds(duration: float | timedelta) -> float:
    s = duration.total_seconds() if isinstance(duration, timedelta) else duration
    if isinstance(s, bool) or not isinstance(s, int | float) or s < 0:
        raise ConfigError(
            f"sleep needs a non-negative number of seconds or a timedelta, got {duration!r}"
        )
    return float(s)


def _begin_sleep(ctx: ActionContext, seconds: float) -> tuple[ActionState, float | None]:
    """The sleep's state and its deadline, or None for the deadline if it already finished."""
    c = ctx.controller
    state, done = c.begin_step(ctx, "sleep", "durable.sleep", _ENC.encode([seconds]))
    if done is not None:
        return state, None
    prior = c.step_prior_output(state)
    if prior is not None:
        return state, float(msgspec.msgpack.decode(prior))
    return state, time.time() + seconds


async def sleep(duration: float | timedelta) -> None:
    """Sleep durably (in async code): after a crash, only the remaining time is slept."""
    seconds = _seconds(duration)
    ctx = current_action.get()
    if ctx is None:
        await asyncio.sleep(seconds)
        return
    c = ctx.controller
    state, deadline = _begin_sleep(ctx, seconds)
    if deadline is None:
        return
    if state.output is None:
        await c.record_step(state, _ENC.encode(deadline), final=False)
    remaining = deadline - time.time()
    if remaining > 0:
        await asyncio.sleep(remaining)
    # The deadline goes with the final record too: in a worker, ``state`` is a copy that
    # never saw the first record, and a finished sleep without its output is not replayed.
    await c.record_step(state, _ENC.encode(deadline))


def sleep_sync(duration: float | timedelta) -> None:
    """Sleep durably in a sync task."""
    seconds = _seconds(duration)
    ctx = current_action.get()
    if ctx is None:
        time.sleep(seconds)
        return
    c = ctx.controller
    state, deadline = _begin_sleep(ctx, seconds)
    if deadline is None:
        return
    if state.output is None:
        c.record_step_sync(state, _ENC.encode(deadline), final=False)
    remaining = deadline - time.time()
    if remaining > 0:
        time.sleep(remaining)
    c.record_step_sync(state, _ENC.encode(deadline))  # with its deadline: see sleep()


def now() -> datetime:
    """The current UTC time, recorded: a replayed run gets the same value back."""
    ctx = current_action.get()
    if ctx is None:
        return datetime.now(UTC)
    c = ctx.controller
    state, out = c.begin_step(ctx, "now", "durable.now", b"")
    if out is None:
        out = _ENC.encode(time.time())
        c.record_step_sync(state, out)
    return datetime.fromtimestamp(float(msgspec.msgpack.decode(out)), UTC)
