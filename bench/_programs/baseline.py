"""Plain-asyncio baselines for bench/core.py: the same shapes of work, no Heddle.

Imports nothing of Heddle, so its peak RSS is that of a bare asyncio process.
Prints ``BENCH_RESULT {json}`` as its last line, like workloads.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any


async def noop(x: int) -> int:
    return x


async def fanout(n: int) -> int:
    return len(await asyncio.gather(*(noop(i) for i in range(n))))


async def chain(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = await noop(i)
    return acc


_memo: dict[int, int] = {}


async def memo_noop(x: int) -> int:
    if x not in _memo:
        _memo[x] = await noop(x)
    return _memo[x]


async def cached(n: int) -> int:
    return len(await asyncio.gather(*(memo_noop(i) for i in range(n))))


async def remaining(n: int, concurrency: int, sleep: float) -> int:
    """What recovery has left to do, done without durability: n children, same limits."""
    sem = asyncio.Semaphore(concurrency)

    async def one(x: int) -> int:
        async with sem:
            await asyncio.sleep(sleep)
            return x

    return len(await asyncio.gather(*(one(i) for i in range(n))))


def _timed(coro_fn: Any, *args: Any) -> float:
    asyncio.run(fanout(10))  # warm-up, as in workloads.py
    start = time.perf_counter()
    asyncio.run(coro_fn(*args))
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["fanout", "chain", "cache", "recovery-remaining"])
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--sleep", type=float, default=0.0)
    a = p.parse_args(argv)
    result: dict[str, Any] = {"n": a.n}
    if a.mode == "fanout":
        result["seconds"] = _timed(fanout, a.n)
    elif a.mode == "chain":
        result["seconds"] = _timed(chain, a.n)
    elif a.mode == "cache":
        result["first_seconds"] = _timed(cached, a.n)
        start = time.perf_counter()
        asyncio.run(cached(a.n))
        result["second_seconds"] = time.perf_counter() - start
    else:
        start = time.perf_counter()
        asyncio.run(remaining(a.n, a.concurrency, a.sleep))
        result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
