"""Crash at every journal boundary: a driver, a worker or a recoverer SIGKILLs itself at a
named crash point (HEDDLE_CRASHPOINT), the run is recovered with ``heddle recover`` or
heddle.recover, and the result is compared with a crash-free run of the same program.

Hit counts are fixed so that the crash lands mid-run (the mixed workload makes ~60
commits); each case asserts the crash really happened, so a crash point that moved
or vanished fails here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chaoslib.campaign import References
from chaoslib.scenario import DRIVER, RECOVERER, WORKER, Scenario
from chaoslib.store_view import Target

N = 8

# (store, crash point, hit, executor, how to recover): every point on SQLite, the journal's
# and the run's on PostgreSQL too (the inline executor's commits are the same there).
DRIVER_CASES = [
    ("sqlite", "journal.before_commit", 6, "process", "cli"),
    ("sqlite", "journal.mid_commit", 17, "process", "python"),
    ("sqlite", "journal.after_commit", 29, "process", "cli"),
    ("sqlite", "journal.before_commit", 33, "inline", "python"),
    ("sqlite", "journal.mid_commit", 9, "inline", "cli"),
    ("sqlite", "journal.after_commit", 23, "inline", "python"),
    ("sqlite", "inline.after_body", 12, "inline", "cli"),
    ("sqlite", "run.before_finish", 1, "process", "python"),
    ("postgres", "journal.before_commit", 11, "process", "python"),
    ("postgres", "journal.mid_commit", 24, "process", "cli"),
    ("postgres", "journal.after_commit", 5, "process", "python"),
    ("postgres", "inline.after_body", 14, "inline", "python"),
    ("postgres", "run.before_finish", 1, "process", "cli"),
]


def _check(s: Scenario, references: References, executor: str) -> int:
    """Judge the run against the crash-free one; returns the bodies run more than once."""
    output, keys, _ = references.get("mixed", N, executor)
    verdict = s.verdict(output, set(keys))
    assert verdict.violations() == [], s.describe()
    return verdict.extra_runs


@pytest.mark.parametrize(
    ("store_kind", "point", "hit", "executor", "how"),
    DRIVER_CASES,
    ids=[f"{k}-{p}:{h}-{e}-{how}" for k, p, h, e, how in DRIVER_CASES],
)
def test_recovery_after_a_driver_crash_point_matches_a_crash_free_run(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    store_kind: str,
    point: str,
    hit: int,
    executor: str,
    how: str,
) -> None:
    s = scenarios(make_target(executor), "mixed", N)
    s.start(crashpoint=f"{point}:{hit}@driver")

    assert s.wait_exit() == -9, s.describe()
    assert [(k.role, k.how) for k in s.kills] == [(DRIVER, f"crashpoint:{point}")]
    assert s.snapshot().status == "running"
    s.recover(how)
    s.finish(max_recoveries=0)

    extra_runs = _check(s, references, executor)
    if point == "run.before_finish":
        # Everything had succeeded: recovery replays the root and runs no body at all.
        assert extra_runs == 0


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_a_run_killed_after_its_final_write_is_complete_and_refuses_recovery(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
) -> None:
    s = scenarios(make_target("process"), "mixed", N)
    s.start(crashpoint="run.after_finish@driver")

    assert s.wait_exit() == -9, s.describe()
    assert s.snapshot().status == "succeeded"
    s.recover("cli")
    assert s.wait_exit() == 1
    assert s.driving is not None and "already succeeded" in s.driving.errors()
    s.died.clear()  # the refusal is the expected outcome

    assert _check(s, references, "process") == 0


@pytest.mark.parametrize(("store_kind", "hit"), [("sqlite", 3), ("postgres", 11)])
def test_a_worker_crash_after_its_body_is_retried_and_the_run_finishes(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    store_kind: str,
    hit: int,
) -> None:
    s = scenarios(make_target("process"), "mixed", N)
    s.start(crashpoint=f"worker.after_body:{hit}@worker")

    assert s.wait_exit() == 0, s.describe()
    assert [(k.role, k.how) for k in s.kills] == [(WORKER, "crashpoint:worker.after_body")]
    # Only the body whose result died with its worker ran twice.
    assert _check(s, references, "process") == 1


@pytest.mark.parametrize(
    ("store_kind", "point", "hit", "how"),
    [
        ("sqlite", "journal.after_commit", 4, "python"),
        ("postgres", "journal.before_commit", 8, "cli"),
    ],
)
def test_a_recoverer_that_crashes_at_a_journal_boundary_is_recovered_in_turn(
    make_target: Callable[[str], Target],
    scenarios: Callable[..., Scenario],
    references: References,
    store_kind: str,
    point: str,
    hit: int,
    how: str,
) -> None:
    s = scenarios(make_target("process"), "mixed", N)
    s.start()
    assert s.poll(lambda: s.count("step") >= 3, 30), s.describe()
    assert s.kill_driving() is not None

    s.recover(how, crashpoint=f"{point}:{hit}@driver")
    assert s.wait_exit() == -9, s.describe()
    assert [k.role for k in s.kills] == [DRIVER, RECOVERER]
    s.recover("python" if how == "cli" else "cli")
    s.finish(max_recoveries=0)

    _check(s, references, "process")
