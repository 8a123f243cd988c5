"""Helpers for the durability tests: drive a program in a subprocess, watch its progress
in the store, kill it, and read what it recorded and what its task bodies did."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

import heddle
from heddle._sdk.config import get_session
from heddle._store import ActionRecord

PROGRAMS = Path(__file__).parent
COUNTER_ENV = "HEDDLE_TEST_COUNTER"
# Process-executor workers fork from a server that keeps the environment it started
# with, so the counter's path must not change between tests: one file per session,
# set before any test runs (at collection) and emptied by each test.
COUNTER_FILE = Path(tempfile.gettempdir()) / f"heddle-test-counter-{os.getpid()}.txt"
os.environ[COUNTER_ENV] = str(COUNTER_FILE)


def use_counter() -> Path:
    """The (emptied) counter file that task bodies append to."""
    COUNTER_FILE.write_text("")
    return COUNTER_FILE


def start(program: str | Path, *args: object) -> subprocess.Popen[str]:
    """Run ``python programs/<program> args...`` (inheriting this environment)."""
    path = Path(program) if Path(program).is_absolute() else PROGRAMS / program
    return subprocess.Popen(
        [sys.executable, str(path), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(
    what: str,
    check: Callable[[], bool],
    proc: subprocess.Popen[str] | None = None,
    timeout: float = 30.0,
) -> None:
    """Poll ``check`` until it holds; fail early (with the program's stderr) if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"program exited ({proc.returncode}) before {what}:\n{err}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the driver and reap it (a zombie would still look alive to recover())."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the program finished before it was killed"


def the_run_id(proc: subprocess.Popen[str] | None = None) -> str:
    """The id of the only run in the current home, once the program has recorded it."""
    found: list[str] = []

    def recorded() -> bool:
        runs = get_session().store.list_runs()
        found.extend(r.id for r in runs)
        return bool(runs)

    wait_until("the run to be recorded", recorded, proc)
    return found[0]


def actions(run_id: str, task_name: str | None = None) -> list[ActionRecord]:
    """The run's actions (optionally of one task or trace), straight from the store."""
    recs = heddle.get_run(run_id).actions()
    return [a for a in recs if task_name is None or a.task_name == task_name]


def count(run_id: str, task_name: str, status: str = "succeeded") -> int:
    return sum(1 for a in actions(run_id, task_name) if a.status == status)


def inputs_of(action: ActionRecord) -> list[Any]:
    """An action's recorded inputs, as the plain list of its arguments."""
    assert action.inputs is not None
    literal = get_session().literals.from_literal(action.inputs)
    return list(msgspec.msgpack.decode(literal))


def succeeded_inputs(run_id: str, task_name: str) -> list[list[Any]]:
    return [inputs_of(a) for a in actions(run_id, task_name) if a.status == "succeeded"]


def counter_lines(counter: Path) -> collections.Counter[str]:
    """How many times each task body ran, from the lines the bodies appended."""
    if not counter.exists():
        return collections.Counter()
    return collections.Counter(counter.read_text().splitlines())
