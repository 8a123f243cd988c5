"""A slow fan-out whose children log each execution, to check recovery never re-runs a success."""

from __future__ import annotations

import asyncio
import os

import heddle

env = heddle.TaskEnvironment(name="crash")


@env.task
async def child(i: int, log: str) -> int:
    await asyncio.sleep(0.05)
    # One write() per line on an O_APPEND file: lines from concurrent children never interleave.
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{i}\n".encode())
    finally:
        os.close(fd)
    return i


@env.task
async def main(log: str, n: int = 60) -> int:
    results = await heddle.map(child, range(n), [log] * n, concurrency=3)
    return sum(results)
