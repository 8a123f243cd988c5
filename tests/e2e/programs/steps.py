"""A task made of @heddle.trace steps, then a durable sleep between two clock reads.

Usage: python steps.py HOME ROOT N    (ROOT: traced | sleeper | sync_sleeper)
"""

import asyncio
import os
import sys

import heddle

env = heddle.TaskEnvironment(name="steps")


def mark(tag: str) -> None:
    with open(os.environ["HEDDLE_TEST_COUNTER"], "a") as f:
        f.write(tag + "\n")


@heddle.trace
async def ask_model(prompt: str) -> str:
    # Stands in for an expensive, non-deterministic call (an LLM, a paid API).
    mark(f"ask:{prompt}")
    await asyncio.sleep(0.1)
    return f"answer to {prompt}"


@heddle.trace
def tokens(text: str) -> int:
    mark(f"tokens:{text}")
    return len(text.split())


@env.task
async def traced(n: int) -> list[str]:
    mark("traced")
    out = []
    for i in range(n):
        answer = await ask_model(f"q{i}")
        out.append(f"{answer} ({tokens(answer)} tokens)")
    return out


@env.task
async def sleeper(seconds: float) -> list[float]:
    mark("sleeper")
    before = heddle.durable.now()
    mark(f"before:{before.timestamp()!r}")
    await heddle.durable.sleep(seconds)
    after = heddle.durable.now()
    return [before.timestamp(), after.timestamp()]


@env.task
def sync_sleeper(seconds: float) -> list[float]:
    # A sync task calls durable.sleep plainly, as in Flyte 2: it sleeps durably right here.
    mark("sync_sleeper")
    before = heddle.durable.now()
    mark(f"before:{before.timestamp()!r}")
    heddle.durable.sleep(seconds)
    after = heddle.durable.now()
    return [before.timestamp(), after.timestamp()]


ROOTS = {"traced": traced, "sleeper": sleeper, "sync_sleeper": sync_sleeper}

if __name__ == "__main__":
    heddle.init(sys.argv[1])
    root = ROOTS[sys.argv[2]]
    arg = int(sys.argv[3]) if sys.argv[2] == "traced" else float(sys.argv[3])
    print(heddle.run(root, arg).outputs())
