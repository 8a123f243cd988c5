"""A chain of sequential tasks: step(i) then check(i), each appending to a counter file.

Usage: python chain.py HOME N
"""

import asyncio
import os
import sys

import heddle

env = heddle.TaskEnvironment(name="chain")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@env.task
async def step(i: int, acc: int) -> int:
    mark(f"step:{i}")
    await asyncio.sleep(0.1)
    return acc + i


@env.task
async def check(i: int, acc: int) -> int:
    mark(f"check:{i}")
    return acc * 1


@env.task
async def main(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = await step(i, acc)
        acc = await check(i, acc)
    return acc


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    print(heddle.run(main, int(sys.argv[2])).outputs())
