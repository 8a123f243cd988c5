"""The chaos suite's program. Every task body appends ``start KEY PID`` when it begins and
``end KEY PID`` when it is done to the side-effect ledger ($HEDDLE_CHAOS_LEDGER), where
KEY is the task's short name and inputs (``leaf:3``): the suite reads there which bodies
really ran, and how often.

Roots (SHAPE):
- ``mixed``: a chain of N steps, a fan-out of N leaves (concurrency 3), two sync
  subtrees of sync leaves called from async code, and a task of N traced steps.
- ``deep`` / ``deep_slow``: root -> mid -> N sequential leaves of 0.2 s / 1 s (killing the
  worker of the root or of mid mid-way is the scenario).
- ``big``: N chunks of 100 kB each (blobs), then a digest of all of them (a blob input).
- ``cancel``: a task that gives up waiting for a slow child (N seconds) after 0.3 s, then a
  chain of 8 steps.

Usage: python workload.py SHAPE N --home H [--db-url URL] [--storage-url URL]
                          [--executor E] [--store-faults SPEC]
Prints ``RUN <id>`` first, then ``OUTPUT <json>`` when the run succeeds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import heddle
from heddle._sdk.config import get_session

LEDGER_ENV = "HEDDLE_CHAOS_LEDGER"
CHUNK_BYTES = 100_000

env = heddle.TaskEnvironment(name="chaos")


def note(event: str, name: str, *inputs: object) -> None:
    """One ledger line, in one O_APPEND write: whole even when processes write at once."""
    line = f"{event} {name}:{'.'.join(str(x) for x in inputs)} {os.getpid()}\n"
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# -- mixed ---------------------------------------------------------------------------


@env.task
async def step(i: int, acc: int) -> int:
    note("start", "step", i, acc)
    await asyncio.sleep(0.02)
    note("end", "step", i, acc)
    return acc + i


@env.task
async def leaf(i: int) -> int:
    note("start", "leaf", i)
    await asyncio.sleep(0.03)
    note("end", "leaf", i)
    return i * i


@env.task
def twig(j: int, k: int) -> int:
    note("start", "twig", j, k)
    time.sleep(0.02)
    note("end", "twig", j, k)
    return j * 100 + k


@env.task
def branch(j: int, n: int) -> int:
    note("start", "branch", j, n)
    total = sum(twig(j, k) for k in range(n))
    note("end", "branch", j, n)
    return total


@heddle.trace
async def probe(i: int) -> int:
    note("start", "probe", i)
    await asyncio.sleep(0.01)
    note("end", "probe", i)
    return i * 7


@env.task
async def traced(n: int) -> int:
    note("start", "traced", n)
    total = 0
    for i in range(n):
        total += await probe(i)
    note("end", "traced", n)
    return total


@env.task
async def mixed(n: int) -> int:
    note("start", "mixed", n)
    acc = 0
    for i in range(n):
        acc = await step(i, acc)
    squares = await heddle.map(leaf, range(n), concurrency=3)
    branches = await asyncio.gather(*(branch.aio(j, n // 2 + 1) for j in range(2)))
    total = acc + sum(squares) + sum(branches) + await traced(n)
    note("end", "mixed", n)
    return total


def mixed_output(n: int) -> int:
    """What ``mixed(n)`` returns, computed without Heddle."""
    m = n // 2 + 1
    chain = sum(range(n))
    squares = sum(i * i for i in range(n))
    branches = sum(j * 100 + k for j in range(2) for k in range(m))
    return chain + squares + branches + sum(i * 7 for i in range(n))


# -- deep ----------------------------------------------------------------------------


@env.task
async def slow_leaf(i: int, seconds: float) -> int:
    note("start", "slow_leaf", i, seconds)
    await asyncio.sleep(seconds)
    note("end", "slow_leaf", i, seconds)
    return i


@env.task
async def mid(n: int, seconds: float) -> int:
    note("start", "mid", n, seconds)
    total = 0
    for i in range(n):
        total += await slow_leaf(i, seconds)
    note("end", "mid", n, seconds)
    return total


@env.task
async def deep(n: int) -> int:
    note("start", "deep", n)
    out = await mid(n, 0.2)
    note("end", "deep", n)
    return out


@env.task
async def deep_slow(n: int) -> int:
    note("start", "deep_slow", n)
    out = await mid(n, 1.0)
    note("end", "deep_slow", n)
    return out


# -- big -----------------------------------------------------------------------------


def chunk_bytes(i: int) -> bytes:
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (CHUNK_BYTES // len(seed) + 1))[:CHUNK_BYTES]


@env.task
async def chunk(i: int) -> bytes:
    note("start", "chunk", i)
    await asyncio.sleep(0.02)
    note("end", "chunk", i)
    return chunk_bytes(i)


@env.task
async def digest(parts: list[bytes]) -> str:
    note("start", "digest", len(parts))
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    note("end", "digest", len(parts))
    return h.hexdigest()


@env.task
async def big(n: int) -> str:
    note("start", "big", n)
    parts = await heddle.map(chunk, range(n), concurrency=2)
    out = await digest(parts)
    note("end", "big", n)
    return out


def big_output(n: int) -> str:
    h = hashlib.sha256()
    for i in range(n):
        h.update(chunk_bytes(i))
    return h.hexdigest()


# -- cancel --------------------------------------------------------------------------


@env.task
async def slow_child(seconds: float) -> float:
    note("start", "slow_child", seconds)
    await asyncio.sleep(seconds)
    note("end", "slow_child", seconds)
    return seconds


@env.task
async def impatient(seconds: float) -> str:
    note("start", "impatient", seconds)
    try:
        await asyncio.wait_for(slow_child(seconds), timeout=0.3)
        out = "waited"
    except TimeoutError:
        out = "gave up"
    note("end", "impatient", seconds)
    return out


@env.task
async def cancel(seconds: float) -> str:
    note("start", "cancel", seconds)
    out = await impatient(seconds)
    acc = 0
    for i in range(8):
        acc = await step(i, acc)
    note("end", "cancel", seconds)
    return out


ROOTS = {"mixed": mixed, "deep": deep, "deep_slow": deep_slow, "big": big, "cancel": cancel}


def expected_output(shape: str, n: int) -> object:
    """The output of a crash-free run, for the shapes whose output is known in closed form."""
    if shape == "mixed":
        return mixed_output(n)
    if shape in ("deep", "deep_slow"):
        return sum(range(n))
    if shape == "big":
        return big_output(n)
    return "gave up"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shape", choices=sorted(ROOTS))
    parser.add_argument("n", type=float)
    parser.add_argument("--home", required=True)
    parser.add_argument("--db-url")
    parser.add_argument("--storage-url")
    parser.add_argument("--executor", default="process")
    parser.add_argument("--store-faults", help="seeded store faults (see chaoslib.faulty_store)")
    args = parser.parse_args()
    heddle.init(args.home, db_url=args.db_url, storage_url=args.storage_url, executor=args.executor)
    session = get_session()
    store = session.store
    if args.store_faults:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from chaoslib.faulty_store import install

        install(args.store_faults)
    n: float | int = args.n if args.shape == "cancel" else int(args.n)
    run = heddle.run(ROOTS[args.shape], n, wait=False)
    print(f"RUN {run.id}", flush=True)
    run.wait()
    session.store = store  # faults are for the driver; reading the result is not part of it
    print(f"OUTPUT {json.dumps(run.outputs())}", flush=True)


if __name__ == "__main__":
    main()
