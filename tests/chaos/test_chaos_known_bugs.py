"""Faults the chaos campaign found that other engineers are fixing now (issue 11). Each is
a strict xfail: CI stays green until the fix merges, and then the XPASS fails, so the
mark is removed with the fix. The reason names what fails and who fixes it.
"""

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
from chaoslib.scenario import Scenario
from chaoslib.store_view import Target


def _judge(s: Scenario, references: References, shape: str, n: float, executor: str) -> None:
    output, keys, _ = references.get(shape, n, executor)
    verdict = s.verdict(output, set(keys))
    assert verdict.violations() == [], s.describe()


def _kill_worker_running(s: Scenario, key: str) -> None:
    pid = ledger.pid_of(ledger.read(s.ledger), key)
    assert pid is not None and s.kill_worker(pid, [key]) is not None, s.describe()


# -- the lead's (worker liveness, children of a dead parent, orphans) ---------------------


@pytest.mark.xfail(
    strict=True,
    reason="killing the worker that runs a parent re-runs its succeeded children: all 20 "
    "leaves run again and the old mid keeps running beside the new one — fixed by the lead "
    "(issue 11.1)",
)
def test_killing_the_worker_of_a_parent_does_not_rerun_its_succeeded_children(
    scenarios: Callable[..., Scenario], references: References, tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "deep", 20)
    s.start()
    assert s.poll(lambda: s.count("slow_leaf") >= 5, 60), s.describe()
    _kill_worker_running(s, "deep:20")
    s.finish(max_recoveries=0)
    _judge(s, references, "deep", 20, "process")


@pytest.mark.xfail(
    strict=True,
    reason="killing the worker of `mid` runs the leaf it was waiting on a second time (the "
    "retried mid calls it again while it still runs, or after it succeeded unseen) — fixed "
    "by the lead (issue 11.1)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="a child cancelled by its parent (asyncio.wait_for in a worker) keeps running on "
    "the process executor and stays 'running' in the succeeded run — fixed by the lead "
    "(issue 11.2)",
)
def test_a_child_its_parent_gave_up_on_is_stopped_and_not_left_running(
    scenarios: Callable[..., Scenario], tmp_path: Path
) -> None:
    s = scenarios(Target("sqlite", tmp_path / "home"), "cancel", 3.0)
    s.start()
    s.finish(max_recoveries=0)
    verdict = s.verdict(output_of("cancel", 3.0), CANCEL_KEYS)
    assert verdict.violations() == [], s.describe()


@pytest.mark.xfail(
    strict=True,
    reason="after `heddle recover`, an action of the dead driver that the new driver never "
    "calls again (the child a replayed parent gave up on) stays 'running' in the succeeded "
    "run — fixed by the lead (issue 11.2)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="traces of a script run on worker processes are named '<dynamic-code>.probe' "
    "(cloudpickle ships __main__ functions by value and blanks co_filename); `heddle recover` "
    "names them 'workload.probe': recorded traces run again and the old ones stay 'running' "
    "- fixed by trace-identity (issue 10.2)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="a 2-3 s PostgreSQL restart kills the driver (StoreError: the server closed the "
    "connection); the run needs `heddle recover` — fixed by store-resilience (issue 11.4)",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="`heddle recover --force` while the driver still runs: both drive the run, bodies "
    "run twice and a duplicate-key StoreError ends one of them — the old driver is fenced by "
    "store-resilience (issue 11.4)",
)
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
    second = s.recover("python", force=True)
    s.driving = first
    s.wait_exit()
    s.driving = second
    s.wait_exit()
    assert second.popen.returncode == 0, s.describe()
    assert not any("UNIQUE" in d or "duplicate key" in d for d in s.died), s.died
    s.died.clear()  # the fenced driver stopping is expected
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
@pytest.mark.xfail(
    strict=True,
    reason="a corrupt or missing blob that recovery needs fails the run for good instead of "
    "re-running the action that produced it — fixed by blobs-input (issue 11.6)",
)
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
