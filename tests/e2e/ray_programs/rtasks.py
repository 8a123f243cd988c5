"""Tasks for the Ray executor tests: placement, nesting, failures, kills and recovery."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import ray

import heddle

# Only the head node has this much memory: a root task asking for it stays there,
# so killing another node never takes the root with it.
ON_HEAD = heddle.Resources(memory="3Gi")

env = heddle.TaskEnvironment(name="rtasks")
head = env.clone_with(resources=ON_HEAD)


def node() -> str:
    return ray.get_runtime_context().get_node_id()


@env.task
def where(i: int, hold: float = 0.0) -> str:
    print(f"where {i} runs on {node()}")
    time.sleep(hold)
    return node()


@head.task
async def spread(n: int, hold: float) -> list[str]:
    return list(await asyncio.gather(*(where.aio(i, hold) for i in range(n))))


@env.task
def square(x: int) -> int:
    return x * x


@env.task
def sum_squares(n: int) -> int:
    # A sync body calling tasks: each call blocks this worker until the child is done.
    return sum(square(i) for i in range(n))


@head.task
async def nested(n: int) -> list[int]:
    return list(await asyncio.gather(*(sum_squares.aio(k) for k in range(1, n + 1))))


@env.task(resources=heddle.Resources(gpu=1))
def on_gpu() -> tuple[str, str]:
    return node(), os.environ.get("CUDA_VISIBLE_DEVICES", "")


@env.task(resources=heddle.Resources(accelerator="T4"))
def on_t4() -> str:
    return node()


@env.task(resources=heddle.Resources(custom={"fast_disk": 1}))
def on_fast_disk() -> str:
    return node()


@env.task
def fail_with(message: str) -> int:
    raise KeyError(message)


@env.task(retries=1)
def flaky(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("first attempt fails")
    return "second attempt"


@env.task(resources=heddle.Resources(memory="150Mi"))
def hog(mb: int) -> int:
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(2)
    return len(block) // 2**20


@head.task
async def hog_then_more(mb: int) -> str:
    try:
        await hog.aio(mb)
    except heddle.OOMError as exc:
        more = hog.override(resources=heddle.Resources(memory=f"{mb * 3}Mi"))
        return f"caught OOMError (peak {exc.peak_bytes}) then {await more.aio(mb // 10)}"
    return "no OOM"


@env.task(timeout=1.5)
def sleeps(pidfile: str) -> None:
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(120)


@env.task(cache="auto")
def counted(marker: str, x: int) -> int:
    with open(marker, "a") as f:
        f.write("ran\n")
    return x + 1


imaged = heddle.TaskEnvironment(
    name="imaged", image=heddle.Image(env={"GREETING": "hello from the image"})
)


@imaged.task(env_vars={"EXTRA": "from the task"})
def greet() -> str:
    return f"{os.environ['GREETING']}, {os.environ['EXTRA']}"


@env.task
def hold(i: int, folder: str) -> str:
    """Note where it runs, then wait until the test releases it."""
    here = node()
    with open(os.path.join(folder, f"started-{i}"), "a") as f:
        f.write(f"{here} {os.getpid()}\n")
    release = Path(folder, "release")
    deadline = time.monotonic() + 90
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return here


@head.task
async def hold_all(n: int, folder: str) -> list[str]:
    return list(await asyncio.gather(*(hold.aio(i, folder) for i in range(n))))


@env.task
def step(i: int, folder: str) -> int:
    with open(os.path.join(folder, f"ran-{i}"), "a") as f:
        f.write("ran\n")
    time.sleep(0.4)
    return i


@head.task
async def chain(n: int, folder: str) -> list[int]:
    return [await step.aio(i, folder) for i in range(n)]


cached_env = heddle.TaskEnvironment(name="rcached", cache="auto")


@heddle.trace
def lookup(x: int) -> int:
    return x * 3


@cached_env.task
def cached_leaf(x: int) -> int:
    return lookup(x) + 1


@cached_env.task
async def cached_parent(x: int) -> int:
    # Runs in a Ray worker, which drives the leaf (and the leaf's trace) itself.
    return await cached_leaf.aio(x) + 1
