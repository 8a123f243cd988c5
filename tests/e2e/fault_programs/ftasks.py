"""Tasks for the process executor's fault tests: every body appends to a ledger
(one line per body that ran, O_APPEND so lines never interleave), so a test can tell
which bodies ran more than once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import heddle

env = heddle.TaskEnvironment(name="ft", resources=heddle.Resources(cpu=0.25))


def note(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:
        f.write(line + "\n")


@env.task
def leaf(ledger: str, i: int, seconds: float) -> int:
    note(ledger, f"leaf-start {i} {os.getpid()}")
    time.sleep(seconds)
    note(ledger, f"leaf {i} {os.getpid()}")
    return i * i


@env.task
async def mid(ledger: str, n: int, seconds: float) -> int:
    note(ledger, f"mid {os.getpid()}")
    total = 0
    for i in range(n):
        total += await leaf.aio(ledger, i, seconds)
    return total


@env.task
async def main(ledger: str, n: int = 20, seconds: float = 0.2) -> int:
    note(ledger, f"main {os.getpid()}")
    return await mid(ledger, n, seconds)


@env.task
async def slow_child(ledger: str, seconds: float) -> str:
    note(ledger, f"slow_child-start {os.getpid()}")
    await asyncio.sleep(seconds)
    note(ledger, f"slow_child-end {os.getpid()}")
    return "done"


@env.task
async def cancels_child(ledger: str, seconds: float) -> str:
    """Starts a child, then cancels it before it ends."""
    t = asyncio.create_task(slow_child(ledger, seconds))
    await asyncio.sleep(0.5)
    t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await t
    return "cancelled"


@env.task
async def fails_fast(ledger: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    raise ValueError("sibling failed")


@env.task
async def gather_torn_down(ledger: str, seconds: float) -> str:
    """A gather whose sibling fails: the slow child is no longer awaited by anyone."""
    try:
        await asyncio.gather(slow_child(ledger, seconds), fails_fast(ledger, 0.3))
    except ValueError:
        return "sibling failed"
    return "no failure"


@env.task
async def forgets_child(ledger: str, seconds: float) -> str:
    """Starts a child and returns without awaiting it."""
    asyncio.get_running_loop().create_task(slow_child(ledger, seconds))
    await asyncio.sleep(0.3)
    return "forgot"


@env.task
async def then_cpu_bound(ledger: str, seconds: float) -> str:
    return await cancels_child(ledger, seconds) + " then " + await quick(ledger)


@env.task
async def quick(ledger: str) -> str:
    return "quick"


@env.task
async def cancel_then_wait(ledger: str, seconds: float) -> str:
    """Cancels a child, then goes on working for a while: the child must stop at once,
    not when this task ends."""
    t = asyncio.create_task(slow_child(ledger, seconds))
    await asyncio.sleep(0.5)
    t.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await t
    await asyncio.sleep(2.0)
    return "waited"


busy = heddle.TaskEnvironment(name="busy", resources=heddle.Resources(cpu=1))


@busy.task
def short(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


@busy.task
async def many_short(durations: list[float], pidfile: str = "") -> list[int]:
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    outs = await heddle.map(short, range(len(durations)), durations, return_exceptions=True)
    return [o if isinstance(o, int) else -1 for o in outs]


@busy.task
def one_second(i: int) -> int:
    time.sleep(1.0)
    return i


@heddle.TaskEnvironment(name="light", resources=heddle.Resources(cpu=0.1)).task
async def four_at_once() -> list[int]:
    return list(await asyncio.gather(*(one_second.aio(i) for i in range(4))))
