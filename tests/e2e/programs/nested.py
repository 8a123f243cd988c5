"""Nested tasks, two shapes of tree:

- ``sync_main``: a sync root calls sync children from its worker thread, and each
  child calls its own sync grandchildren from its thread.
- ``async_main``: an async root gathers async branches that gather async leaves,
  plus sync subtrees called with ``.aio()``.

Every body appends a line to the counter file. Usage: python nested.py HOME ROOT N
"""

import asyncio
import os
import sys
import time

import heddle

env = heddle.TaskEnvironment(name="nested")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@env.task
def leaf(i: int, j: int) -> int:
    mark(f"leaf:{i}.{j}")
    time.sleep(0.04)
    return i * 10 + j


@env.task
def middle(i: int) -> int:
    mark(f"middle:{i}")
    return sum(leaf(i, j) for j in range(4))


@env.task
def sync_main(n: int) -> int:
    mark("sync_main")
    return sum(middle(i) for i in range(n))


@env.task
async def aleaf(i: int, j: int) -> int:
    mark(f"aleaf:{i}.{j}")
    await asyncio.sleep(0.05 * (i + 1))
    return i * 10 + j


@env.task
async def branch(i: int) -> int:
    mark(f"branch:{i}")
    return sum(await asyncio.gather(*(aleaf(i, j) for j in range(4))))


@env.task
async def async_main(n: int) -> int:
    mark("async_main")
    branches = await asyncio.gather(*(branch(i) for i in range(n)))
    subtrees = await asyncio.gather(*(middle.aio(100 + i) for i in range(n)))
    return sum(branches) + sum(subtrees)


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    root = sync_main if sys.argv[2] == "sync" else async_main
    print(heddle.run(root, int(sys.argv[3])).outputs())
