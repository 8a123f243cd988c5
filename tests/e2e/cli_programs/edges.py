"""Tasks for the command line's edge cases: strict JSON, deep JSON, non-UTF-8 arguments."""

from __future__ import annotations

from typing import Any

import heddle

env = heddle.TaskEnvironment(name="edges")


@env.task
async def ints(xs: list[int]) -> list[int]:
    return xs


@env.task
async def counts(by_name: dict[str, int]) -> dict[str, int]:
    return by_name


@env.task
async def floats(xs: list[float]) -> list[float]:
    return xs


@env.task
async def text(s: str) -> str:
    return s


@env.task
async def anything(x: Any) -> str:
    return repr(x)
