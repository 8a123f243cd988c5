"""heddle.recover and heddle.abort at their edges: runs that are alive, finished, unknown,
failed or killed, driven in this process or in a subprocess."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from programs.harness import (
    PROGRAMS,
    actions,
    count,
    counter_lines,
    kill,
    start,
    the_run_id,
    use_counter,
    wait_until,
)

import heddle


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Path:
    # Inline unless a test asks for the process executor.
    monkeypatch.setenv("HEDDLE_EXECUTOR", "inline")
    return use_counter()


def _import_program(name: str) -> ModuleType:
    """Import programs/<name>.py in this process, under its own module name."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, PROGRAMS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_recover_refuses_a_run_whose_driver_is_alive(home: Path, counter: Path) -> None:
    proc = start("forever.py", home, 1000)
    try:
        run_id = the_run_id(proc)
        wait_until("a child to succeed", lambda: count(run_id, "forever.tick") >= 1, proc)
        with pytest.raises(heddle.RecoveryError, match="still being driven"):
            heddle.recover(run_id)
        assert proc.poll() is None, "a refused recovery must leave the live driver alone"
    finally:
        kill(proc)


def test_recover_refuses_a_succeeded_run(home: Path, counter: Path) -> None:
    proc = start("forever.py", home, 2)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    run_id = the_run_id()
    assert heddle.get_run(run_id).status == "succeeded"
    with pytest.raises(heddle.RecoveryError, match="already succeeded"):
        heddle.recover(run_id)
    assert counter_lines(counter) == {"tick:0": 1, "tick:1": 1}


def test_recover_of_an_unknown_run_raises_run_not_found(home: Path) -> None:
    with pytest.raises(heddle.RunNotFoundError):
        heddle.recover("rnosuchrun0000000")


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_recover_of_a_failed_run_reruns_only_the_failed_children(
    home: Path, tmp_path: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):
        (data / f"{i}.txt").write_text("oops" if i == 3 else str(i * 10))
    proc = start("reader.py", home, data, 5)
    assert proc.wait(timeout=30) != 0
    run_id = the_run_id()
    assert heddle.get_run(run_id).status == "failed"
    with pytest.raises(ValueError, match="oops"):
        heddle.get_run(run_id).outputs()

    (data / "3.txt").write_text("30")  # the user fixes the input
    run = heddle.recover(run_id)

    assert run.status == "succeeded"
    assert run.outputs() == 100
    runs = counter_lines(counter)
    assert {i: runs[f"read:{i}.txt"] for i in range(5)} == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1}
    assert runs["total"] == 2


def _wait_for_a_child_in_flight(run_id: str, proc: subprocess.Popen[str] | None = None) -> None:
    wait_until("a child to run", lambda: count(run_id, "forever.tick", "running") == 1, proc)


def _assert_nothing_left_running(run_id: str) -> None:
    ticks = [a.status for a in actions(run_id, "forever.tick")]
    assert ticks == ["aborted"], "the child in flight was not recorded aborted"
    assert [a.status for a in actions(run_id, "forever.main")] == ["aborted"]


def test_abort_stops_a_run_started_in_this_process(home: Path, counter: Path) -> None:
    forever = _import_program("forever")
    run = heddle.run(forever.main, 1000, 0.2, wait=False)
    wait_until("a child to succeed", lambda: count(run.id, "forever.tick") >= 1)

    status = heddle.abort(run.id)

    assert status == "aborted"
    with pytest.raises(heddle.RunAbortedError):
        run.outputs()
    assert run.status == "aborted"
    ticks = sum(counter_lines(counter).values())
    time.sleep(0.5)
    assert sum(counter_lines(counter).values()) == ticks, "children kept running after abort"
    assert ticks < 1000


@pytest.mark.parametrize(
    "executor",
    ["inline", "process"],
)
def test_abort_records_the_child_in_flight_as_aborted(
    home: Path, counter: Path, executor: str
) -> None:
    forever = _import_program("forever")
    run = heddle.run(forever.main, 1000, 30.0, wait=False, executor=executor)
    _wait_for_a_child_in_flight(run.id)

    assert heddle.abort(run.id, wait=15) == "aborted"
    with pytest.raises(heddle.RunAbortedError):
        run.wait()
        run.outputs()

    _assert_nothing_left_running(run.id)


@pytest.mark.parametrize(
    "executor",
    ["inline", "process"],
)
def test_abort_stops_a_run_driven_by_another_process(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("forever.py", home, 1000, 30)
    try:
        run_id = the_run_id(proc)
        _wait_for_a_child_in_flight(run_id, proc)
        started = time.monotonic()

        status = heddle.abort(run_id, wait=15)

        assert status == "aborted"
        proc.wait(timeout=15)
        assert time.monotonic() - started < 10, "the 30s child was not stopped"
        assert proc.returncode != 0
        _assert_nothing_left_running(run_id)
    finally:
        if proc.poll() is None:
            kill(proc)


def test_abort_of_a_killed_run_marks_it_aborted_at_once(home: Path, counter: Path) -> None:
    proc = start("forever.py", home, 1000)
    run_id = the_run_id(proc)
    wait_until("a child to succeed", lambda: count(run_id, "forever.tick") >= 2, proc)
    kill(proc)
    assert heddle.get_run(run_id).status == "running"

    started = time.monotonic()
    status = heddle.abort(run_id)

    assert time.monotonic() - started < 1.0
    assert status == "aborted"
    assert heddle.get_run(run_id).status == "aborted"
    statuses = {a.status for a in actions(run_id)}
    assert "running" not in statuses and "queued" not in statuses
    assert count(run_id, "forever.tick") >= 2, "aborting must keep what succeeded"
