"""Recovery: kill a run's driver with SIGKILL midway, then finish the run with heddle.recover.

This script plays both parts. It starts itself again as a subprocess that runs a
fan-out of 60 children, kills that process once some children are done, and then
recovers the run: children whose success was recorded are replayed from the log,
the rest run. Run it with ``python examples/recovery.py``.
"""

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="recovery")

# Each task body appends a line here, so we can see which ones really ran.
LOG = Path(".heddle-recovery-example.log")


@env.task
async def work(i: int) -> int:
    with LOG.open("a") as f:
        f.write(f"{i}\n")
    await asyncio.sleep(0.05)
    return i * i


@env.task
async def main(n: int) -> int:
    results = await heddle.map(work, range(n), concurrency=4)
    return sum(results)


def drive() -> None:
    """The subprocess: start the run, say its id, and drive it until killed."""
    run = heddle.run(main, 60, wait=False)
    print(run.id, flush=True)
    run.wait()


def succeeded(run_id: str) -> int:
    """How many children the store holds as succeeded."""
    actions = heddle.get_run(run_id).actions()
    return sum(a.task_name == "recovery.work" and a.status == "succeeded" for a in actions)


def ran() -> list[int]:
    """The children whose bodies ran so far, in order, from the log they append to."""
    return [int(line) for line in LOG.read_text().splitlines()] if LOG.exists() else []


if __name__ == "__main__":
    heddle.init()  # runs are recorded in .heddle/ in the current directory
    if sys.argv[1:] == ["--drive"]:
        drive()
        sys.exit()

    LOG.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, __file__, "--drive"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    print(f"started run {run_id} in process {child.pid}")

    while succeeded(run_id) < 20:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # no chance to clean up: like a crash
    child.wait()
    done = succeeded(run_id)
    print(f"killed it with SIGKILL after {done} of 60 children had succeeded")
    print(f"status in the store: {heddle.get_run(run_id).status}")

    before = ran()
    run = heddle.recover(run_id)  # re-runs main; recorded children return their stored output
    print(
        f"recovered: {run.status}, output {run.outputs()} (expected {sum(i * i for i in range(60))})"
    )

    again = set(ran()[len(before) :])
    replayed = set(range(60)) - again
    in_flight = again & set(before)
    print(f"replayed from the log: {len(replayed)} children (not run again)")
    print(
        f"ran during recovery: {len(again)} children, {len(in_flight)} of them in flight at the kill"
    )
    # Every child recorded as succeeded was replayed; children in flight at the kill ran twice.
    assert len(replayed) == done, "a child recorded as succeeded ran again"
    LOG.unlink(missing_ok=True)
