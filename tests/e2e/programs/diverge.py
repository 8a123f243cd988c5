"""A run whose first driver calls a child that a recovered driver never calls again.

Usage: python diverge.py HOME MARKER
"""

import asyncio
import os
import sys

import heddle

env = heddle.TaskEnvironment(name="diverge")


@env.task
async def hang() -> str:
    await asyncio.sleep(3600)
    return "never"


@env.task
async def other() -> str:
    return "other"


@env.task
async def root(marker: str) -> str:
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        return await hang()
    return await other()


if __name__ == "__main__":
    heddle.init(sys.argv[1])
    print(heddle.run(root, sys.argv[2]).outputs())
