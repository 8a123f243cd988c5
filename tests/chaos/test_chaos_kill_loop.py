"""Seeded kill loops (the short profile): drivers, recoverers and workers running leaves are
SIGKILLed at moments drawn from the seed, crash points are armed, and every run is judged
by the invariants. A failure prints the seed; ``bench/chaos.py replay SEED --store S
--leaf-workers-only`` plays the same plan again. The long profile (bench/chaos.py run) plays
hundreds of seeds, kills workers running parents too, and restarts PostgreSQL.

HEDDLE_CHAOS_SEEDS=5,17,... replaces the seeds below (to replay a CI failure, or to
widen the loop locally).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from chaoslib.campaign import References, make_plan, play
from chaoslib.store_view import Target

# Chosen for spread: process and inline executors, all three programs, crash points in
# the driver and in workers, up to five kills per run (see `bench/chaos.py replay`).
SEEDS = {"sqlite": [3, 15], "postgres": [10, 2]}


def _cases() -> list[tuple[str, int]]:
    override = os.environ.get("HEDDLE_CHAOS_SEEDS")
    if override:
        seeds = [int(s) for s in override.split(",") if s.strip()]
        return [(kind, seed) for kind in SEEDS for seed in seeds]
    return [(kind, seed) for kind, seeds in SEEDS.items() for seed in seeds]


@pytest.mark.parametrize(
    ("store_kind", "seed"), _cases(), ids=[f"{k}-seed{s}" for k, s in _cases()]
)
def test_a_seeded_kill_loop_keeps_every_invariant(
    make_target: Callable[[str], Target],
    references: References,
    tmp_path: Path,
    store_kind: str,
    seed: int,
) -> None:
    plan = make_plan(seed, store_kind, parent_workers=False, pg_restart=False)
    print(
        f"chaos seed {seed}: replay with bench/chaos.py replay {seed} --store {store_kind} "
        f"--leaf-workers-only\n{plan}"
    )
    log: list[str] = []
    result = play(plan, make_target(plan.executor), tmp_path / "run", references, log=log.append)

    assert result.violations == [], f"seed {seed}: {result.to_json()}\n" + "\n".join(log)
    assert result.status == "succeeded"
