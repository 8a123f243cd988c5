"""Runs with interesting action trees: a failure, a cache hit, a retry and a wide fan-out."""

from __future__ import annotations

from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="shapes")


@env.task
async def explode(x: int) -> int:
    raise ValueError(f"cannot handle {x}")


@env.task
async def fails(x: int = 7) -> int:
    return await explode(x)


@env.task(cache="auto")
async def square(x: int) -> int:
    return x * x


@env.task(retries=2)
async def flaky(marker: str) -> str:
    # Fails on its first attempt only: the marker file remembers it was tried.
    path = Path(marker)
    if not path.exists():
        path.write_text("tried")
        raise RuntimeError("transient failure")
    return "ok"


@env.task
async def leaf(i: int) -> int:
    return i


@env.task
async def tree(marker: str, width: int = 100) -> int:
    first = await square(3)
    second = await square(3)  # same inputs: served from the cache
    await flaky(marker)
    with heddle.group("fan"):
        leaves = await heddle.map(leaf, range(width))
    total: int = first + second + sum(leaves)
    return total
