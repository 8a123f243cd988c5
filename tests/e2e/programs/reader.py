"""Children that read numbers from files: one bad file fails the run until it is fixed.

Usage: python reader.py HOME DATA_DIR N
"""

import asyncio
import os
import sys
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="reader")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@env.task
async def read_number(path: str) -> int:
    mark(f"read:{Path(path).name}")
    text = Path(path).read_text()
    if not text.strip().isdigit():
        # Fail after the good files are done, so the failure is the only thing unfinished.
        await asyncio.sleep(0.3)
    return int(text)


@env.task
async def total(data_dir: str, n: int) -> int:
    mark("total")
    files = [str(Path(data_dir) / f"{i}.txt") for i in range(n)]
    return sum(await asyncio.gather(*(read_number(f) for f in files)))


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    print(heddle.run(total, sys.argv[2], int(sys.argv[3])).outputs())
