"""A run that keeps going until it is aborted or killed: children that sleep in turn.

Usage: python forever.py HOME N [PAUSE]
"""

import asyncio
import os
import sys

import heddle

env = heddle.TaskEnvironment(name="forever")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@env.task
async def tick(i: int, pause: float) -> int:
    mark(f"tick:{i}")
    await asyncio.sleep(pause)
    return i


@env.task
async def main(n: int, pause: float = 0.2) -> int:
    total = 0
    for i in range(n):
        total += await tick(i, pause)
    return total


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    print(heddle.run(main, int(sys.argv[2]), pause).outputs())
