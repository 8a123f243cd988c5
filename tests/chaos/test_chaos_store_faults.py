"""Store faults: a store that fails at seeded rates, a disk that fills up (blobs, SQLite),
a corrupted blob, and two recoverers racing for one run.

A fault may fail a run, never corrupt it: the error names what failed, and once the
fault is gone a recovery finishes the run with the crash-free output, without running
any body whose action had succeeded and without losing a recorded output.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaoslib import diskfull
from chaoslib.campaign import References
from chaoslib.scenario import Scenario
from chaoslib.store_view import Target

N = 8


def _faults(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


def _check(s: Scenario, references: References, shape: str, n: int, executor: str) -> None:
    output, keys, _ = references.get(shape, n, executor)
    verdict = s.verdict(output, set(keys))
    assert verdict.violations() == [], s.describe()


@pytest.mark.parametrize(
    ("store_kind", "spec", "expect_error"),
    [
        ("sqlite", "seed=1,commit=0.05", "cannot record actions: injected fault"),
        ("postgres", "seed=1,commit=0.05", "cannot record actions: injected fault"),
        ("sqlite", "seed=2,lost_ack=0.05", "answer was lost): injected fault"),
        ("sqlite", "seed=3,update_run=1.0", "cannot update_run: injected fault"),
    ],
    ids=[
        "sqlite-commit-fails",
        "postgres-commit-fails",
        "sqlite-ack-lost",
        "sqlite-run-unwritable",
    ],
)
def test_a_failing_store_fails_the_run_with_a_store_error_and_recovery_completes_it(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
    store_kind: str,
    spec: str,
    expect_error: str,
) -> None:
    log = tmp_path / "faults.txt"
    s = scenarios(make_target("process"), "mixed", N)
    s.start(store_faults=f"{spec},log={log}")

    rc = s.wait_exit()
    assert _faults(log), "no fault was injected"
    if rc != 0:  # a store that retries may ride a fault out; if not, it says what failed
        assert len(s.died) == 1 and "StoreError" in s.died[0], s.describe()
        assert expect_error in s.died[0], s.died
        assert s.snapshot().status in ("failed", "running")
        s.recover("python")
    s.finish(max_recoveries=0)

    _check(s, references, "mixed", N, "process")


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_failing_heartbeats_and_run_reads_do_not_stop_a_run(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    log = tmp_path / "faults.txt"
    # The driver reads its run record and checkpoints every 2 s: a run of 3 s or more.
    s = scenarios(make_target("process"), "deep", 15)
    s.start(store_faults=f"seed=4,get_run=1.0,checkpoint=1.0,log={log}")

    assert s.wait_exit() == 0, s.describe()
    assert _faults(log)
    assert s.recoveries == []
    _check(s, references, "deep", 15, "process")


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_a_retry_that_cannot_read_its_children_fails_cleanly_and_recovers(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    # A worker dies after its body (a crash point); the retry must load the children
    # that already succeeded, and that read fails.
    log = tmp_path / "faults.txt"
    s = scenarios(make_target("process"), "mixed", N)
    s.start(
        crashpoint="worker.after_body:3@worker",
        store_faults=f"seed=5,actions_of_parent=1.0,log={log}",
    )

    s.wait_exit()
    assert [k.role for k in s.kills] == ["worker"]
    if _faults(log):  # the retried action had a body that called tasks
        assert "StoreError" in s.died[0], s.describe()
    s.finish(max_recoveries=1)

    _check(s, references, "mixed", N, "process")


@pytest.mark.parametrize("store_kind", ["postgres"])
def test_a_recoverer_whose_store_fails_says_so_and_a_later_one_finishes(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    s = scenarios(make_target("process"), "mixed", N)
    s.start()
    assert s.poll(lambda: s.count("step") >= 3, 30), s.describe()
    assert s.kill_driving() is not None

    s.recover("python", store_faults=f"seed=6,actions_of_run=1.0,log={tmp_path / 'f.txt'}")
    assert s.wait_exit() == 1
    assert "StoreError" in s.died[-1] and "actions_of_run" in s.died[-1], s.died
    s.recover("cli")
    s.finish(max_recoveries=0)

    _check(s, references, "mixed", N, "process")


# -- a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[diskfull.SmallDisk]:
    why = diskfull.unavailable()
    if why is not None:
        pytest.skip(f"disk-full scenarios need a small filesystem: {why}")
    disk = diskfull.SmallDisk(tmp_path / "disk", "16m")
    yield disk
    disk.unmount()


def test_a_full_disk_for_blobs_fails_the_run_naming_the_blob_and_recovery_finishes(
    small_disk: diskfull.SmallDisk,
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    storage = small_disk.path / "storage"
    target = Target("sqlite", tmp_path / "home", storage_url=str(storage), executor="process")
    s = scenarios(target, "big", 10)
    small_disk.fill(leave=450_000)  # room for 4 of the 10 chunks of 100 kB
    s.start()

    assert s.wait_exit() == 1, s.describe()
    assert "StorageError: cannot write blob sha256:" in s.died[0], s.died
    assert "No space left on device" in s.died[0]
    assert s.count("chunk") >= 2
    small_disk.make_room()
    s.recover("cli")
    s.finish(max_recoveries=0)

    _check(s, references, "big", 10, "process")


def test_a_full_disk_for_sqlite_fails_the_run_with_a_store_error_and_recovery_finishes(
    small_disk: diskfull.SmallDisk,
    scenarios: Callable[..., Scenario],
    references: References,
    tmp_path: Path,
) -> None:
    db = small_disk.path / "heddle.db"
    target = Target("sqlite", tmp_path / "home", db_url=f"sqlite:///{db}", executor="process")
    s = scenarios(target, "mixed", 10)  # its session made the store (the schema) already
    small_disk.fill(leave=200_000)
    s.start()

    assert s.wait_exit() == 1, s.describe()
    assert "StoreError: store " in s.died[0] and "disk is full" in s.died[0], s.died
    assert str(db) in s.died[0], s.died
    small_disk.make_room()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    s.recover("python")
    s.finish(max_recoveries=0)

    _check(s, references, "mixed", 10, "process")


# -- blobs ---------------------------------------------------------------------------------


def _chunk_blob(s: Scenario, storage: Path) -> Path:
    """The blob file of the output of a chunk that succeeded."""
    chunk = next(a for k, a in sorted(s.snapshot().succeeded().items()) if k.startswith("chunk:"))
    assert chunk.output is not None and chunk.output[:1] == b"r", "chunks are kept as blobs"
    digest = chunk.output[1:].decode().partition(":")[2]
    return storage / "blobs" / digest[:2] / digest[2:]


def _kill_big_after_chunks(s: Scenario, chunks: int) -> None:
    s.start()
    assert s.poll(lambda: s.count("chunk") >= chunks, 30), s.describe()
    assert s.kill_driving() is not None
    assert s.count("digest") == 0, "killed too late: the digest was done"


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_a_corrupted_blob_never_yields_a_wrong_output(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
) -> None:
    target = make_target("process")
    s = scenarios(target, "big", 10)
    _kill_big_after_chunks(s, 3)
    blob = _chunk_blob(s, target.home / "storage")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    producer = next(
        k for k, a in sorted(s.snapshot().succeeded().items()) if k.startswith("chunk:")
    )
    s.recover("python")
    s.wait_exit()

    # Recovery heals the run: the producer of the corrupt blob runs again (the only
    # succeeded action that may), and the run ends with the crash-free output.
    output, keys, _ = references.get("big", 10, "process")
    verdict = s.verdict(output, set(keys))
    healed = [r for r in verdict.reruns if r.startswith(f"{producer} ")]
    assert healed, f"the producer {producer} of the corrupt blob did not run again"
    verdict.reruns = [r for r in verdict.reruns if r not in healed]
    assert verdict.violations() == [], s.describe()


# -- racing recoverers -------------------------------------------------------------------


@pytest.mark.parametrize(("store_kind", "first"), [("sqlite", "cli"), ("postgres", "python")])
def test_two_recoverers_racing_for_a_run_one_wins_and_nothing_runs_twice(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    store_kind: str,
    first: str,
) -> None:
    s = scenarios(make_target("process"), "mixed", N)
    s.start()
    assert s.poll(lambda: s.count("leaf") >= 1, 30), s.describe()
    assert s.kill_driving() is not None

    a = s.recover(first)
    b = s.recover("python" if first == "cli" else "cli")
    s.driving = a
    s.wait_exit()
    s.driving = b
    s.wait_exit()

    codes = sorted(d.popen.returncode for d in (a, b))
    loser = a if a.popen.returncode != 0 else b
    assert codes[0] == 0 and codes[1] in (1, 3), s.describe()
    said = loser.output() + loser.errors()
    assert "claimed by another process" in said or "still being driven" in said, said
    s.died.clear()  # the loser's refusal is the expected outcome, not a fault
    _check(s, references, "mixed", N, "process")
