"""Heddle workloads for bench/core.py, one per process so peak RSS is the scenario's own.

Run as ``python bench/_programs/workloads.py MODE --home DIR ... [--profile]``; the last line
printed is ``BENCH_RESULT {json}``. Timings cover the measured run only, after a
10-child warm-up run in the same process (imports and first-call costs excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import resource
import sys
import time
from typing import Any

import heddle

env = heddle.TaskEnvironment(name="bench")
cached_env = heddle.TaskEnvironment(name="bench_cached", cache="auto")

_counter_fd: int | None = None


def _record_body_start(x: int) -> None:
    """Append ``x`` to the counter file named by HEDDLE_BENCH_COUNTER (one line per body run)."""
    global _counter_fd
    if _counter_fd is None:
        path = os.environ["HEDDLE_BENCH_COUNTER"]
        _counter_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_counter_fd, f"{x}\n".encode())


@env.task
async def noop(x: int) -> int:
    return x


@cached_env.task
async def cached_noop(x: int) -> int:
    return x


@env.task
async def work(x: int, sleep: float) -> int:
    _record_body_start(x)
    await asyncio.sleep(sleep)
    return x


@env.task
async def fanout_gather(n: int) -> int:
    results = await asyncio.gather(*(noop(i) for i in range(n)))
    return len(results)


@env.task
async def fanout_map(n: int) -> int:
    results = await heddle.map(noop, range(n))
    return len(results)


@env.task
async def chain(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = await noop(i)
    return acc


@env.task
async def cached_fanout(n: int) -> int:
    results = await asyncio.gather(*(cached_noop(i) for i in range(n)))
    return len(results)


@env.task
async def recovery_fanout(n: int, concurrency: int, sleep: float) -> int:
    results = await heddle.map(work, range(n), [sleep] * n, concurrency=concurrency)
    return len(results)


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _emit(result: dict[str, Any]) -> None:
    print("BENCH_RESULT " + json.dumps(result), flush=True)


_profile: cProfile.Profile | None = None


def _timed_run(task: heddle.Task[Any, Any], **inputs: Any) -> tuple[float, heddle.Run]:
    heddle.run(fanout_gather, n=10)  # warm-up: lazy imports, first commits
    if _profile is not None:
        _profile.enable()
    start = time.perf_counter()
    run = heddle.run(task, **inputs)
    seconds = time.perf_counter() - start
    if _profile is not None:
        _profile.disable()
    run.outputs()  # raises if the run failed
    return seconds, run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "mode",
        choices=[
            "fanout-gather",
            "fanout-map",
            "chain",
            "cache-first",
            "cache-second",
            "recovery-start",
            "recovery-resume",
        ],
    )
    p.add_argument("--home", required=True)
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--run-id", default="")
    p.add_argument(
        "--profile", action="store_true", help="cProfile the measured run; print to stderr"
    )
    a = p.parse_args(argv)
    global _profile
    if a.profile:
        _profile = cProfile.Profile()
    heddle.init(a.home, executor="inline")  # the core targets are for the inline executor

    if a.mode in ("fanout-gather", "fanout-map", "chain"):
        task = {"fanout-gather": fanout_gather, "fanout-map": fanout_map, "chain": chain}[a.mode]
        seconds, _ = _timed_run(task, n=a.n)
        _emit({"seconds": seconds, "n": a.n, "peak_rss_mb": _peak_rss_mb()})
    elif a.mode in ("cache-first", "cache-second"):
        seconds, run = _timed_run(cached_fanout, n=a.n)
        hits = sum(1 for r in run.actions() if r.cached)
        _emit({"seconds": seconds, "n": a.n, "hits": hits, "peak_rss_mb": _peak_rss_mb()})
    elif a.mode == "recovery-start":
        run = heddle.run(
            recovery_fanout, n=a.n, concurrency=a.concurrency, sleep=a.sleep, wait=False
        )
        print(f"RUN_ID {run.id}", flush=True)
        run.outputs()  # raises (non-zero exit) if the run failed instead of being killed
        _emit({"finished": True})
    else:
        if _profile is not None:
            _profile.enable()
        start = time.perf_counter()
        run = heddle.recover(a.run_id)
        seconds = time.perf_counter() - start
        if _profile is not None:
            _profile.disable()
        _emit({"seconds": seconds, "status": run.status, "output": run.outputs()})
    if _profile is not None:
        pstats.Stats(_profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main(sys.argv[1:])
