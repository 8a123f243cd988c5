"""Faults under the process executor: workers of parents killed, children cancelled,
orphans. Every body writes to a ledger, so re-runs of succeeded work are counted."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import heddle
from heddle._sdk.config import get_session

sys.path.insert(0, str(Path(__file__).parent / "fault_programs"))
import ftasks


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.txt"
    path.touch()
    return path


def _lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines()


def _kill_when(ledger: Path, body: str, leaves_done: int) -> None:
    """SIGKILL the worker running ``body`` once that many leaves have succeeded."""
    deadline = time.time() + 60
    while time.time() < deadline:
        lines = _lines(ledger)
        done = sum(1 for line in lines if line.startswith("leaf "))
        pids = [int(line.split()[1]) for line in lines if line.startswith(body + " ")]
        if done >= leaves_done and pids:
            os.kill(pids[-1], signal.SIGKILL)
            return
        time.sleep(0.02)
    raise AssertionError("the run never got that far")


@pytest.mark.parametrize("victim", ["ft.main", "ft.mid"])
def test_killing_a_parents_worker_never_reruns_succeeded_children_nor_runs_one_twice(
    process_home: Path, ledger: Path, victim: str
) -> None:
    run = heddle.run(ftasks.main, str(ledger), 20, 0.2, wait=False)
    killer = threading.Thread(target=_kill_when, args=(ledger, victim.split(".")[1], 5))
    killer.start()
    assert run.outputs() == sum(i * i for i in range(20))
    killer.join()
    ends = Counter(line.split()[1] for line in _lines(ledger) if line.startswith("leaf "))
    starts = Counter(line.split()[1] for line in _lines(ledger) if line.startswith("leaf-start "))
    # Every leaf succeeded exactly once: none re-ran after the kill.
    assert ends == Counter({str(i): 1 for i in range(20)}), ends
    # At most the leaf in flight at the kill started twice, and never at the same time.
    assert sum(starts.values()) <= 21, starts
    store = get_session().store
    actions = {a.task_name: a for a in store.actions_of_run(run.id) if a.kind == "task"}
    attempts = [t for t in store.attempts_of_run(run.id) if t.action_id == actions[victim].id]
    assert [t.number for t in attempts] == [1, 2]
    assert attempts[0].status == "failed" and attempts[1].status == "succeeded"


def _pids(ledger: Path, prefix: str) -> list[int]:
    return [int(line.split()[-1]) for line in _lines(ledger) if line.startswith(prefix)]


def _gone(pid: int) -> bool:
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except (ProcessLookupError, OSError):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (ftasks.cancels_child, "cancelled"),
        (ftasks.gather_torn_down, "sibling failed"),
        (ftasks.forgets_child, "forgot"),
    ],
)
@pytest.mark.parametrize("executor", ["process", "inline"])
def test_a_child_its_parent_no_longer_awaits_is_stopped_and_recorded_aborted(
    tmp_path: Path, ledger: Path, task: heddle.Task[..., str], expected: str, executor: str
) -> None:
    heddle.init(tmp_path / "home", executor=executor)
    started = time.time()
    run = heddle.run(task, str(ledger), 30.0)
    assert run.outputs() == expected
    assert time.time() - started < 15, "the run waited for a child nobody awaits"
    store = get_session().store
    children = [a for a in store.actions_of_run(run.id) if a.task_name == "ft.slow_child"]
    assert [a.status for a in children] == ["aborted"]
    assert not any(line.startswith("slow_child-end") for line in _lines(ledger))
    if executor == "process":
        (pid,) = _pids(ledger, "slow_child-start")
        assert _gone(pid), "the cancelled child's worker is still running"
    # The run holds nothing unfinished once it has ended.
    unfinished = [a for a in store.actions_of_run(run.id) if a.status in ("queued", "running")]
    assert unfinished == []


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_a_cancelled_child_stops_at_once_not_when_its_parent_ends(
    tmp_path: Path, ledger: Path, executor: str
) -> None:
    heddle.init(tmp_path / "home", executor=executor)
    run = heddle.run(ftasks.cancel_then_wait, str(ledger), 30.0)
    assert run.outputs() == "waited"
    store = get_session().store
    by_task = {a.task_name: a for a in store.actions_of_run(run.id)}
    child, parent = by_task["ft.slow_child"], by_task["ft.cancel_then_wait"]
    assert child.status == "aborted"
    assert child.finished_at is not None and parent.finished_at is not None
    # The parent went on for 2 s after cancelling: the child had ended long before.
    assert parent.finished_at - child.finished_at > 1.5


def _workers() -> list[int]:
    """Pids of this process's worker processes (children of its fork server)."""
    import psutil

    out = []
    for child in psutil.Process().children():
        try:
            if "forkserver" in " ".join(child.cmdline()):
                out.extend(p.pid for p in child.children())
        except psutil.Error:
            continue
    return out


@pytest.mark.slow
def test_short_jobs_sent_ahead_never_hang_across_many_runs(tmp_path: Path) -> None:
    """Durations straddle the send-ahead window, so jobs are sent ahead, taken back,
    skipped and handed over in every order; every run must end, and right."""
    import random

    heddle.init(tmp_path / "home", executor="process")
    rng = random.Random(11)
    for _ in range(15):
        durations = [rng.choice((0.0, 0.01, 0.04, 0.06, 0.09)) for _ in range(60)]
        run = heddle.run(ftasks.many_short, durations, wait=False)
        run.wait(timeout=60)
        assert run.outputs() == list(range(60))


@pytest.mark.slow
def test_random_worker_kills_never_hang_a_run_nor_lose_a_result(tmp_path: Path) -> None:
    import random

    heddle.init(tmp_path / "home", executor="process")
    rng = random.Random(7)
    durations = [rng.choice((0.0, 0.02, 0.05, 0.08)) for _ in range(200)]
    parents = tmp_path / "parent-pids"
    parents.touch()
    run = heddle.run(ftasks.many_short, durations, str(parents), wait=False)
    stop = threading.Event()
    kills = []

    def killer() -> None:
        while not stop.wait(rng.uniform(0.05, 0.3)):
            pids = _workers()
            parent = [int(p) for p in parents.read_text().split()]
            if len(parent) >= 3:  # the parent's system budget is 3: spare its last try
                pids = [p for p in pids if p != parent[-1]]
            if pids:
                pid = rng.choice(pids)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)

    t = threading.Thread(target=killer)
    t.start()
    try:
        run.wait(timeout=120)
    finally:
        stop.set()
        t.join()
    outs = run.outputs()
    assert kills, "no worker was killed"
    # Each item either succeeded or ran out of its system retries: none lost, none hung.
    assert all(o in (i, -1) for i, o in enumerate(outs))
    assert outs.count(-1) < len(outs) // 2
    store = get_session().store
    stuck = [a for a in store.actions_of_run(run.id) if a.status in ("queued", "running")]
    assert stuck == []


def test_time_waiting_for_a_cpu_is_queued_time_not_running_time(tmp_path: Path) -> None:
    heddle.init(tmp_path / "home", executor="process", capacity=heddle.Resources(cpu=2.1))
    run = heddle.run(ftasks.four_at_once)
    assert run.outputs() == [0, 1, 2, 3]
    store = get_session().store
    leaves = [a for a in store.actions_of_run(run.id) if a.task_name == "busy.one_second"]
    assert len(leaves) == 4
    ran = sorted(a.finished_at - a.started_at for a in leaves)  # type: ignore[operator]
    queued = sorted(a.started_at - a.queued_at for a in leaves)  # type: ignore[operator]
    assert all(0.9 < r < 1.6 for r in ran), ran
    # Two start at once; the other two wait about a second for a cpu.
    assert queued[1] < 0.5 and 0.8 < queued[2] < 2.0 and 0.8 < queued[3] < 2.0, queued
    attempts = [t for t in store.attempts_of_run(run.id) if t.action_id in {a.id for a in leaves}]
    for t in attempts:
        assert t.queued_at is not None and t.started_at is not None and t.finished_at is not None
        assert t.queued_at <= t.started_at <= t.finished_at
        assert t.worker is not None and t.worker.startswith("process:")
