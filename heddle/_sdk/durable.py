"""heddle.durable: sleep and clock reads that are recorded like traces.

A run that slept for an hour and crashed does not sleep again on recovery, and
``now()`` returns the same instant on replay as on the first run. As in Flyte 2,
each call works in sync code as it is and has an ``.aio`` form for async code.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

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


def _in_async_code() -> bool:
    """True when an event loop runs on this thread: the caller is async code, which must
    not block the loop. A sync task body runs on a thread of its own (inline) or on a
    worker's main thread whose loop is idle while the body runs (process)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _begin_sleep(ctx: ActionContext, seconds: float) -> tuple[ActionState, float | None]:
    """The sleep's state and its deadline, or None for the deadline if it already finished."""
    c = ctx.controller
    state, done = c.begin_step(ctx, "sleep", "durable.sleep", _ENC.encode([seconds]))
    if done is not None:
        return state, None
    prior = c.step_prior_output(state)
    if prior is not None:
        return state, float(msgspec.msgpack.decode(prior))
    return state, _time.time() + seconds


async def _sleep_async(seconds: float) -> None:
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
    remaining = deadline - _time.time()
    if remaining > 0:
        await asyncio.sleep(remaining)
    # The deadline goes with the final record too: in a worker, ``state`` is a copy that
    # never saw the first record, and a finished sleep without its output is not replayed.
    await c.record_step(state, _ENC.encode(deadline))


def _sleep_blocking(seconds: float) -> None:
    ctx = current_action.get()
    if ctx is None:
        _time.sleep(seconds)
        return
    c = ctx.controller
    state, deadline = _begin_sleep(ctx, seconds)
    if deadline is None:
        return
    if state.output is None:
        c.record_step_sync(state, _ENC.encode(deadline), final=False)
    remaining = deadline - _time.time()
    if remaining > 0:
        _time.sleep(remaining)
    c.record_step_sync(state, _ENC.encode(deadline))  # with its deadline: see _sleep_async


class _Sleep:
    """Sleep durably: after a crash, only the remaining time is slept.

    In sync code (a sync task) ``heddle.durable.sleep(s)`` sleeps right away; in async
    code it returns an awaitable, so ``await heddle.durable.sleep(s)`` works as well as
    ``await heddle.durable.sleep.aio(s)``. A bad duration raises ConfigError at the call.
    """

    def __call__(self, duration: float | timedelta) -> Any:
        seconds = _seconds(duration)
        if _in_async_code():
            return _sleep_async(seconds)
        _sleep_blocking(seconds)
        return None

    def aio(self, duration: float | timedelta) -> Coroutine[Any, Any, None]:
        """Sleep durably in async code: ``await heddle.durable.sleep.aio(s)``."""
        return _sleep_async(_seconds(duration))

    def __repr__(self) -> str:
        return "<function heddle.durable.sleep>"


sleep = _Sleep()


def sleep_sync(duration: float | timedelta) -> None:
    """Sleep durably in sync code (what ``heddle.durable.sleep`` does there too)."""
    _sleep_blocking(_seconds(duration))


def _now_timestamp() -> float:
    ctx = current_action.get()
    if ctx is None:
        return _time.time()
    c = ctx.controller
    state, out = c.begin_step(ctx, "now", "durable.now", b"")
    if out is None:
        out = _ENC.encode(_time.time())
        c.record_step_sync(state, out)
    return float(msgspec.msgpack.decode(out))


async def _now_timestamp_async() -> float:
    ctx = current_action.get()
    if ctx is None:
        return _time.time()
    c = ctx.controller
    state, out = c.begin_step(ctx, "now", "durable.now", b"")
    if out is None:
        out = _ENC.encode(_time.time())
        await c.record_step(state, out)
    return float(msgspec.msgpack.decode(out))


class _Now:
    """The current UTC time, recorded: a replayed run gets the same value back."""

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(_now_timestamp(), UTC)

    async def aio(self) -> datetime:
        """``now()`` for async code (Flyte 2's spelling); recorded the same way."""
        return datetime.fromtimestamp(await _now_timestamp_async(), UTC)

    def __repr__(self) -> str:
        return "<function heddle.durable.now>"


class _Time:
    """The current time in seconds since the epoch, recorded like ``now()``."""

    def __call__(self) -> float:
        return _now_timestamp()

    async def aio(self) -> float:
        return await _now_timestamp_async()

    def __repr__(self) -> str:
        return "<function heddle.durable.time>"


now = _Now()
time = _Time()
