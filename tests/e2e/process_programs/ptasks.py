"""Tasks for the process executor's tests: each body runs in a worker process.

Side effects go to files (named by the caller) so the test process can see them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="ptasks", env_vars={"PTASKS_GREETING": "hello from env"})
secret_env = heddle.TaskEnvironment(
    name="psecret", secrets=(heddle.Secret("PTASKS_TOKEN", env="PTASKS_TOKEN_SOURCE"),)
)


@env.task(resources=heddle.Resources(memory="150Mi"))
def hog(mb: int) -> int:
    blocks = []
    for _ in range(mb // 10):
        blocks.append(bytearray(10 * 2**20))
        time.sleep(0.005)
    return len(blocks)


@env.task
async def oom_then_override(mb: int) -> str:
    try:
        await hog.aio(mb)
    except heddle.OOMError as exc:
        n = await hog.override(resources=heddle.Resources(memory="1Gi")).aio(mb)
        return f"caught {type(exc).__name__} peak={exc.peak_bytes} then {n}"
    return "no oom"


@env.task(resources=heddle.Resources(memory="120Mi"), oom=heddle.OOMRetry(count=2, factor=4.0))
def hog_with_policy(mb: int) -> int:
    return len([bytearray(10 * 2**20) for _ in range(mb // 10)])


@env.task
def die_once(marker: str) -> str:
    """Kills its own worker on the first attempt, like a segfault would."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived in {os.getpid()}"


@env.task(timeout=0.5)
def sleeps_forever(pidfile: str) -> str:
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(60)
    return "never"


@env.task(resources=heddle.Resources(cpu=2))
async def hold_two_cpus(i: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"start {i} {time.time()}\n")
    await asyncio.sleep(0.3)
    with open(log, "a") as f:
        f.write(f"end {i} {time.time()}\n")
    return i


@env.task
async def fan_out_two_cpu_tasks(n: int, log: str) -> list[int]:
    return await heddle.map(hold_two_cpus, range(n), [log] * n)


@env.task(resources=heddle.Resources(cpu=64))
def too_big() -> int:
    return 1


@env.task(resources=heddle.Resources(gpu=1))
def wants_gpu() -> int:
    return 1


@env.task
def shout(word: str) -> str:
    print(f"stdout says {word} with {os.environ.get('PTASKS_GREETING')}")
    print(f"stderr says {word}", file=__import__("sys").stderr)
    return word.upper()


@env.task
def leaf(x: int) -> int:
    return x + 1


@env.task
def middle(x: int) -> int:
    # A sync task in a worker calling a task: runs in another worker.
    return leaf(x) * 10


@env.task
async def top(n: int) -> list[int]:
    return list(await asyncio.gather(*(middle.aio(i) for i in range(n))))


@env.task
def pid_of_worker() -> int:
    return os.getpid()


@env.task
async def pids(n: int) -> list[int]:
    return list(await asyncio.gather(*(pid_of_worker.aio() for _ in range(n))))


@secret_env.task
def uses_secret() -> str:
    token = os.environ["PTASKS_TOKEN"]
    print(f"the token is {token}")
    return f"token has {len(token)} characters"


@env.task
async def slow_children(n: int, pidfile: str) -> int:
    return sum(await heddle.map(sleep_and_note, range(n), [pidfile] * n))


@env.task
def sleep_and_note(i: int, pidfile: str) -> int:
    """Notes its pid, then waits while the file ``<pidfile>.block`` exists."""
    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    while os.path.exists(pidfile + ".block"):
        time.sleep(0.05)
    return i


@env.task
async def traced_in_worker(x: int) -> float:
    @heddle.trace
    async def measure(v: int) -> float:
        return v * 1.5

    first = await measure(x)
    assert heddle.durable.now().tzinfo is not None
    await heddle.durable.sleep(0.05)
    return first


# -- jobs sent ahead to a busy worker (run these with capacity cpu=1) ------------------

cached_env = heddle.TaskEnvironment(name="pcached", cache="auto")


@cached_env.task
def shared_work(x: int, log: str) -> int:
    with open(log, "a") as f:
        f.write(f"shared_work {os.getpid()}\n")
    time.sleep(0.2)
    return x * 10


@env.task
def calls_after_a_while(x: int, log: str) -> int:
    # Queued behind this job's worker while it sleeps, shared_work(x) is what this job
    # then waits on (the identical cached call computes once): unless the queued job
    # is taken back when this one calls a task, neither can finish.
    time.sleep(0.5)
    return shared_work(x, log) + 1


@env.task
async def parent_with_a_job_queued_behind_it(x: int, log: str) -> list[int]:
    return list(await asyncio.gather(calls_after_a_while.aio(x, log), shared_work.aio(x, log)))


@env.task(timeout=0.5)
def overruns(pidfile: str) -> int:
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(30)
    return 0


@env.task
def quick(i: int) -> int:
    return i * 2


@env.task
async def quick_jobs_behind_one_that_is_killed(n: int, pidfile: str) -> list[object]:
    results = await asyncio.gather(
        overruns.aio(pidfile), *(quick.aio(i) for i in range(n)), return_exceptions=True
    )
    return [type(r).__name__ if isinstance(r, BaseException) else r for r in results]


@env.task
def slow_one() -> str:
    time.sleep(2.0)
    return "slow"


@env.task(resources=heddle.Resources(memory="200Mi"))
def medium_one() -> str:
    time.sleep(0.3)
    return "medium"


@env.task
async def quick_job_behind_a_slow_one() -> list[object]:
    # quick(7) asks for what slow_one holds (cpu=1), so it is sent ahead to slow_one's
    # worker; medium_one (a different request) frees a cpu long before slow_one ends.
    return list(await asyncio.gather(slow_one.aio(), medium_one.aio(), quick.aio(7)))


_mappings: list[object] = []


@env.task
def maps_three_gib() -> int:
    """Keeps 3 GiB of address space mapped (untouched) in this warm worker."""
    import mmap

    _mappings.append(mmap.mmap(-1, 3 << 30))
    return os.getpid()


@env.task(resources=heddle.Resources(memory="150Mi"))
def small_hog(mb: int) -> int:
    blocks = [bytearray(2**20) for _ in range(mb)]
    time.sleep(0.2)  # long enough for the driver's watchdog to sample it
    return os.getpid() if len(blocks) == mb else -1


@env.task(resources=heddle.Resources(gpu=1))
def sees_gpus(pause: float) -> list[str]:
    time.sleep(pause)
    return [str(os.getpid()), os.environ.get("CUDA_VISIBLE_DEVICES", "")]


@env.task
async def two_gpu_jobs_at_once() -> list[list[str]]:
    return list(await asyncio.gather(sees_gpus.aio(0.5), sees_gpus.aio(0.5)))


_held: list[bytearray] = []


@env.task
def holds_300_mib() -> int:
    """Keeps 300 MiB of live data in this warm worker after the job ends."""
    _held.append(bytearray(300 * 2**20))
    return os.getpid()
