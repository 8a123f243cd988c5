"""2,000 children through heddle.map or asyncio.gather; each appends 'square:i' to a counter file.

Usage: python fanout.py HOME N MODE [DB_URL]   (MODE: map | gather)
"""

import asyncio
import os
import sys

import heddle

env = heddle.TaskEnvironment(name="fanout")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@env.task
async def square(i: int, stagger: bool) -> int:
    mark(f"square:{i}")
    # Spread the children over a couple of seconds so the test can kill midway.
    await asyncio.sleep(0.001 * i if stagger else 0.02)
    return i * i


@env.task
async def main(n: int, mode: str) -> int:
    if mode == "map":
        results = await heddle.map(square, range(n), [False] * n, concurrency=25)
    else:
        results = await asyncio.gather(*(square(i, True) for i in range(n)))
    return sum(results)


if __name__ == "__main__":
    heddle.init(sys.argv[1], db_url=sys.argv[4] if len(sys.argv) > 4 else None)
    print(heddle.run(main, int(sys.argv[2]), sys.argv[3]).outputs())
