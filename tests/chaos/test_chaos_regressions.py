"""Faults the chaos campaign found on main before issue 11's fixes landed, kept as
regression tests: killed parents' workers, orphans, a dead driver's leftovers, script
traces on workers, PostgreSQL restarts, forced recoveries and damaged blobs."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaoslib import ledger
from chaoslib.campaign import References
from chaoslib.expected import output_of
from chaoslib.pgcluster import PrivateCluster
from chaoslib.scenario import DRIVER, Kill, Scenario
from chaoslib.store_view import Target


def _judge(s: Scenario, references: References, shape: str, n: float, executor: str) -> None:
    output, keys, _ = references.get(shape, n, executor)
    verdict = s.verdict(output, set(keys))
    assert verdict.violations() == [], s.describe()


def _kill_worker_running(s: Scenario, key: str) -> None:
    pid = ledger.pid_of(ledger.read(s.ledger), key)
    assert pid is not None and s.kill_worker(pid, [key]) is not None, s.describe()


# -- the lead's (worker liveness, children of a dead parent, orphans) ---------------------


def test_killing_the_worker_of_a_parent_does_not_rerun_its_succeeded_children(
    scenarios: Callable[..., Scenario], references: References, tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "deep", 20)
    s.start()
    assert s.poll(lambda: s.count("slow_leaf") >= 5, 60), s.describe()
    _kill_worker_running(s, "deep:20")
    s.finish(max_recoveries=0)
    _judge(s, references, "deep", 20, "process")


def test_killing_the_worker_of_a_middle_task_never_runs_a_leaf_twice(
    scenarios: Callable[..., Scenario], references: References, tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "deep_slow", 6)
    s.start()

    def third_leaf_started() -> bool:
        return "slow_leaf:2.1.0" in ledger.starts(ledger.read(s.ledger))

    assert s.poll(third_leaf_started, 60), s.describe()
    # The leaf runs on a worker of its own, which lives on: the retried mid must wait
    # for it (or replay it), never start it again.
    _kill_worker_running(s, "mid:6.1.0")
    s.finish(max_recoveries=0)

    ends = collections.Counter(e.key for e in ledger.read(s.ledger) if e.event == "end")
    assert [k for k, n in ends.items() if k.startswith("slow_leaf:") and n > 1] == []
    _judge(s, references, "deep_slow", 6, "process")


# The child a parent gave up on ends neither succeeded nor running: the run's succeeded
# actions are the parent's and the steps after it.
CANCEL_KEYS = {"cancel:3.0", "impatient:3.0", *(f"step:{i}.{sum(range(i))}" for i in range(8))}


def test_a_child_its_parent_gave_up_on_is_stopped_and_not_left_running(
    scenarios: Callable[..., Scenario], tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "cancel", 3.0)
    s.start()
    s.finish(max_recoveries=0)
    verdict = s.verdict(output_of("cancel", 3.0), CANCEL_KEYS)
    assert verdict.violations() == [], s.describe()


def test_after_recovery_no_action_of_the_dead_driver_is_left_running(
    scenarios: Callable[..., Scenario], tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "cancel", 3.0)
    s.start()
    assert s.poll(lambda: s.count("impatient") == 1, 60), s.describe()
    assert s.kill_driving() is not None
    s.recover("cli")
    s.finish(max_recoveries=0)
    verdict = s.verdict(output_of("cancel", 3.0), CANCEL_KEYS)
    assert verdict.violations() == [], s.describe()


# -- trace-identity's (names that depend on how a program was loaded) -------------------


def test_recovery_replays_the_traces_a_script_recorded_on_worker_processes(
    scenarios: Callable[..., Scenario], references: References, tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "mixed", 14)
    s.start()
    assert s.poll(lambda: s.count("probe") >= 3, 60), s.describe()
    assert s.kill_driving() is not None
    assert s.count("traced") == 0, "killed too late: the traced task was done"
    s.recover("cli")
    s.finish(max_recoveries=0)
    _judge(s, references, "mixed", 14, "process")


# -- store-resilience's (PostgreSQL restarts, fencing) -----------------------------------


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    why = PrivateCluster.unavailable()
    if why is not None:
        pytest.skip(f"a PostgreSQL restart needs a private server: {why}")
    cluster = PrivateCluster()
    yield cluster
    cluster.destroy()


def test_a_run_rides_out_a_postgres_restart_without_recovery(
    private_pg: PrivateCluster,
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    url = private_pg.create_database("restart")
    s = scenarios(Target("postgres", tmp_path / "home", db_url=url), "mixed", 14)
    s.start()
    assert s.poll(lambda: s.count("step") >= 3, 60), s.describe()
    private_pg.restart(down_seconds=2.5)
    assert s.wait_exit() == 0, s.describe()
    assert s.recoveries == []
    _judge(s, references, "mixed", 14, "process")


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_a_forced_recovery_fences_the_driver_that_still_runs(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    store_kind: str,
) -> None:
    s = scenarios(make_target("process"), "deep_slow", 10)
    first = s.start()
    assert s.poll(lambda: s.count("slow_leaf") >= 1, 60), s.describe()
    # What had succeeded when the run was taken over must never run again; bodies in
    # flight in the old driver may (at least once), as after a kill.
    s.observe()
    second = s.recover("python", force=True)
    s.kills.append(Kill(DRIVER, "fenced by recover --force", first.pid, s.elapsed()))
    s.driving = first
    s.wait_exit()
    s.driving = second
    s.wait_exit()
    assert second.popen.returncode == 0, s.describe()
    assert not any("UNIQUE" in d or "duplicate key" in d for d in s.died), s.died
    # The fenced driver stops, saying why; nothing else died.
    assert all("RunTakenOverError" in d for d in s.died), s.died
    s.died.clear()
    _judge(s, references, "deep_slow", 10, "process")


# -- blobs-input's (blobs that recovery needs) ---------------------------------------------


def _damage_a_chunk_blob(s: Scenario, storage: Path, how: str) -> None:
    s.start()
    assert s.poll(lambda: s.count("chunk") >= 3, 60), s.describe()
    assert s.kill_driving() is not None
    assert s.count("digest") == 0, "killed too late: the digest was done"
    chunk = next(a for k, a in sorted(s.snapshot().succeeded().items()) if k.startswith("chunk:"))
    assert chunk.output is not None and chunk.output[:1] == b"r"
    digest = chunk.output[1:].decode().partition(":")[2]
    blob = storage / "blobs" / digest[:2] / digest[2:]
    if how == "corrupt":
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
    else:
        blob.unlink()


@pytest.mark.parametrize("how", ["corrupt", "missing"])
def test_recovery_heals_a_damaged_blob_by_rerunning_its_producer(
    scenarios: Callable[..., Scenario], references: References, tmp_path: Path, how: str
) -> None:
    target = Target("sqlite", tmp_path / "home")
    s = scenarios(target, "big", 10)
    _damage_a_chunk_blob(s, target.home / "storage", how)
    s.recover("python")
    assert s.wait_exit() == 0, s.describe()
    started = time.monotonic()
    output, keys, _ = references.get("big", 10, "process")
    verdict = s.verdict(output, set(keys))
    # The damaged chunk ran again (that is the healing); nothing else that had succeeded.
    assert len(verdict.reruns) == 1 and verdict.reruns[0].startswith("chunk:"), s.describe()
    verdict.reruns = []
    assert verdict.violations() == [], s.describe()
    assert time.monotonic() - started < 60
