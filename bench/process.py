"""Benchmark of the process executor against concurrent.futures.ProcessPoolExecutor.

Run: ``.venv/bin/python bench/process.py [--repeat 5] [--tasks 1000] [--fanout 10000]``.

1. Per-task overhead: 1,000 trivial tasks fanned out by a parent (every action
   durably recorded, each body in a worker process) against the same 1,000 calls
   submitted to a ProcessPoolExecutor with as many workers as the machine has cores,
   measured in the same run. Targets: <= 2 ms per task and <= 2x the baseline.
2. Fan-out of 10,000 children whose concurrency is limited by their declared cpu
   (cpu=1 each on a machine of N cores: at most N run at once), with the peak
   concurrency actually observed.
Each figure is the median of --repeat runs, each in a fresh Heddle home.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import heddle

env = heddle.TaskEnvironment(name="pbench")


def trivial(x: int) -> int:
    return x + 1


@env.task
def trivial_task(x: int) -> int:
    return x + 1


@env.task(resources=heddle.Resources(cpu=1))
def one_cpu(x: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"+ {time.monotonic()}\n")
    time.sleep(0.0005)
    with open(log, "a") as f:
        f.write(f"- {time.monotonic()}\n")
    return x


@env.task
async def fan(n: int) -> int:
    return sum(await heddle.map(trivial_task, range(n)))


@env.task
async def fan_cpu(n: int, log: str) -> int:
    return len(await heddle.map(one_cpu, range(n), [log] * n))


def _pool_baseline(n: int, workers: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(trivial, range(workers)))  # start the workers first
        t = time.perf_counter()
        futures = [pool.submit(trivial, i) for i in range(n)]
        for f in futures:
            f.result()
        return time.perf_counter() - t


def _heddle_fan(n: int) -> float:
    with tempfile.TemporaryDirectory() as home:
        heddle.init(home, executor="process")
        # Start the fork server and warm workers first, as the baseline starts its pool's
        # workers first: idle workers stay warm for the next run in this process.
        heddle.run(fan, 4).outputs()
        t = time.perf_counter()
        heddle.run(fan, n).outputs()
        return time.perf_counter() - t


def _max_overlap(log: Path) -> int:
    events = sorted(
        (float(t), 1 if sign == "+" else -1)
        for sign, t in (line.split() for line in log.read_text().splitlines())
    )
    now = peak = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


def _heddle_fan_cpu(n: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as home:
        heddle.init(home, executor="process")
        log = Path(home) / "spans"
        t = time.perf_counter()
        heddle.run(fan_cpu, n, str(log)).outputs()
        return time.perf_counter() - t, _max_overlap(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--fanout", type=int, default=10_000)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))

    pool, ours = [], []
    for _ in range(args.repeat):
        pool.append(_pool_baseline(args.tasks, cores) / args.tasks * 1000)
        ours.append(_heddle_fan(args.tasks) / args.tasks * 1000)
    p, h = statistics.median(pool), statistics.median(ours)
    print(
        f"per-task overhead, {args.tasks} trivial tasks on {cores} cores (median of {args.repeat})"
    )
    print(f"  ProcessPoolExecutor   {p:8.3f} ms/task   (min {min(pool):.3f}, max {max(pool):.3f})")
    print(f"  heddle process        {h:8.3f} ms/task   (min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"  ratio                 {h / p:8.2f}x        target <= 2 ms/task and <= 2x")

    walls, overlaps = [], []
    for _ in range(max(1, args.repeat // 2)):
        wall, overlap = _heddle_fan_cpu(args.fanout)
        walls.append(wall)
        overlaps.append(overlap)
    w = statistics.median(walls)
    print(f"fan-out of {args.fanout} children with cpu=1 each on {cores} cores")
    print(
        f"  wall {w:.2f} s ({args.fanout / w:,.0f} children/s), most running at once: {max(overlaps)} (limit {cores})"
    )


if __name__ == "__main__":
    main()
