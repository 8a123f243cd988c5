"""Seeded kill loops: a plan of faults per run, derived from its seed alone (print the seed,
pass it back, get the same plan), played against a real run, judged by the invariants.

A plan names the program (shape, size, executor), an optional crash point armed in every
driving process of the run (one crash per run at most), and timed steps: SIGKILL the
process driving the run (the driver, or the recoverer that took over), SIGKILL one of its
workers, or restart PostgreSQL. Whenever the driving process dies, a recoverer (``heddle
recover`` or heddle.recover, by turns) takes over; the next step then targets it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaoslib.expected import output_of
from chaoslib.pgcluster import PrivateCluster
from chaoslib.procs import Driving
from chaoslib.scenario import PARENT_TASKS, Scenario
from chaoslib.store_view import Target

KILL_DRIVING = "kill-driving"
KILL_LEAF_WORKER = "kill-leaf-worker"  # a worker running a task that calls no task
KILL_ANY_WORKER = "kill-worker"  # any worker, parents included (issue 11.1, the lead's)
PG_RESTART = "pg-restart"

# Crash points a plan may arm, with the highest hit that still lands in a run.
CRASH_POINTS = {
    "process": {
        "journal.before_commit@driver": 40,
        "journal.mid_commit@driver": 40,
        "journal.after_commit@driver": 40,
        "worker.after_body@worker": 6,
        "run.before_finish@driver": 1,
    },
    "inline": {
        "journal.before_commit@driver": 30,
        "journal.mid_commit@driver": 30,
        "journal.after_commit@driver": 30,
        "inline.after_body@driver": 25,
        "run.before_finish@driver": 1,
    },
}
SIZES = {"mixed": (8, 14), "big": (6, 12), "deep": (6, 10)}


@dataclass(frozen=True)
class Step:
    # When, after the current driving process started: a fraction of the time a
    # crash-free run of the same program takes here (so kills land mid-run on a fast
    # machine and on a loaded one alike).
    after: float
    action: str


@dataclass(frozen=True)
class Plan:
    seed: int
    store: str
    executor: str
    shape: str
    n: int
    crashpoint: str | None
    steps: tuple[Step, ...]
    recover_first: str  # "cli" or "python"; recoveries alternate from there


def make_plan(seed: int, store: str, *, parent_workers: bool, pg_restart: bool) -> Plan:
    """The plan of run ``seed``: a function of its arguments only."""
    rng = random.Random(seed)
    executor = "process" if rng.random() < 0.8 else "inline"
    shape = rng.choice(("mixed", "mixed", "mixed", "big", "deep"))
    if pg_restart:
        # Long enough to be restarted under: the mixed program on worker processes.
        executor, shape = "process", "mixed"
    low, high = SIZES[shape]
    n = rng.randint(low, high)
    crashpoint = None
    if rng.random() < 0.3:
        points = CRASH_POINTS[executor]
        name = rng.choice(sorted(points))
        point, _, role = name.partition("@")
        crashpoint = f"{point}:{rng.randint(1, points[name])}@{role}"
    worker_kill = KILL_ANY_WORKER if parent_workers else KILL_LEAF_WORKER
    steps = []
    for _ in range(rng.choice((0, 1, 2, 3, 3, 4, 4, 5))):
        action = KILL_DRIVING
        if executor == "process" and rng.random() < 0.45:
            action = worker_kill
        steps.append(Step(round(rng.uniform(0.15, 0.9), 2), action))
    if pg_restart:
        steps.insert(rng.randint(0, len(steps)), Step(round(rng.uniform(0.3, 0.7), 2), PG_RESTART))
    return Plan(
        seed, store, executor, shape, n, crashpoint, tuple(steps), rng.choice(("cli", "python"))
    )


@dataclass
class RunResult:
    """One played plan, as the report reads it (one JSON line per run)."""

    seed: int
    store: str
    executor: str
    shape: str
    n: int
    crashpoint: str | None
    run_id: str | None = None
    kills: list[dict[str, object]] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)
    # Driving processes that ended with an error of their own (not killed by the plan).
    died: list[str] = field(default_factory=list)
    pg_restarts: int = 0
    missed_steps: int = 0
    status: str = ""
    violations: list[str] = field(default_factory=list)
    reruns: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    hung: int = 0
    extra_runs: int = 0
    failed_before_recovery: int = 0  # driving processes that ended with a failed run
    seconds: float = 0.0
    error: str | None = None  # the scenario could not be played

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class References:
    """Crash-free runs of each program, made once per campaign, to compare with."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._made: dict[tuple[str, int, str], tuple[object, frozenset[str], float]] = {}
        self._tried: list[tuple[str, int, str]] = []

    def get(self, shape: str, n: int, executor: str) -> tuple[object, frozenset[str], float]:
        """Output, succeeded keys, and seconds from the driver's start to its exit."""
        key = (shape, n, executor)
        if key not in self._made:
            root = self.workdir / f"reference-{shape}-{n}-{executor}-{len(self._tried)}"
            self._tried.append(key)
            s = Scenario(Target("sqlite", root / "home", executor=executor), shape, n, root)
            try:
                d = s.start()
                s.finish(max_recoveries=0)
                took = time.monotonic() - d.started
                verdict = s.verdict(output_of(shape, n), None)
                problems = verdict.violations()
                if problems or verdict.extra_runs:
                    raise RuntimeError(f"the crash-free run failed: {problems}\n{s.describe()}")
                self._made[key] = (verdict.output, frozenset(s.snapshot().succeeded()), took)
            finally:
                s.stop_all()
                s.close()
        return self._made[key]


def play(
    plan: Plan,
    target: Target,
    workdir: Path,
    references: References,
    cluster: PrivateCluster | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> RunResult:
    """Play ``plan`` on ``target`` and judge the run."""
    result = RunResult(plan.seed, plan.store, plan.executor, plan.shape, plan.n, plan.crashpoint)
    began = time.monotonic()
    ref_output, ref_keys, ref_seconds = references.get(plan.shape, plan.n, plan.executor)
    rng = random.Random(plan.seed * 7919 + 1)  # picks among workers, apart from the plan
    s = Scenario(target, plan.shape, plan.n, workdir, timeout=120.0)
    ways = ["cli", "python"] if plan.recover_first == "cli" else ["python", "cli"]

    def take_over() -> None:
        s.recover(ways[len(s.recoveries) % 2], crashpoint=plan.crashpoint)

    try:
        s.start(crashpoint=plan.crashpoint)
        result.run_id = s.run_id
        for step in plan.steps:
            d = s.driving
            assert d is not None
            s.poll(_due(d, d.started + step.after * ref_seconds), 300)
            if not d.alive():
                s.wait_exit()  # how it ended: a crash point, or an error of its own
                result.missed_steps += 1
                if not _ended_well(s, result):
                    take_over()
                continue
            if step.action == KILL_DRIVING:
                killed = s.kill_driving()
                if killed is None:
                    result.missed_steps += 1
                # Killed after the run's final write, the run has nothing left to recover.
                if s.snapshot().status != "succeeded":
                    take_over()
            elif step.action in (KILL_LEAF_WORKER, KILL_ANY_WORKER):
                if not _kill_a_worker(s, step.action == KILL_LEAF_WORKER, rng):
                    result.missed_steps += 1
            elif step.action == PG_RESTART:
                assert cluster is not None, "a PostgreSQL restart needs a private cluster"
                cluster.restart(down_seconds=rng.uniform(1.5, 3.0))
                result.pg_restarts += 1
        s.wait_exit()
        _ended_well(s, result)
        s.finish(max_recoveries=3)
        verdict = s.verdict(ref_output, set(ref_keys))
        result.status = verdict.status
        result.violations = verdict.violations()
        result.reruns = verdict.reruns
        result.lost = verdict.lost
        result.stuck = verdict.stuck
        result.leftovers = verdict.leftovers
        result.hung = verdict.hung
        result.extra_runs = verdict.extra_runs
    except Exception as exc:  # the run could not be played to the end: a finding too
        result.error = f"{type(exc).__name__}: {exc}"
        result.violations.append(f"scenario error: {result.error}")
        log(s.describe())
        s.stop_all()
    finally:
        s.note_what_killed_workers_ran()
        result.kills = [asdict(k) for k in s.kills]
        result.recoveries = list(s.recoveries)
        result.died = list(s.died)
        result.seconds = round(time.monotonic() - began, 2)
        s.close()
    return result


def _due(d: Driving, at: float) -> Callable[[], bool]:
    """Whether it is time (monotonic ``at``) for the next step, or ``d`` has ended."""
    return lambda: not d.alive() or time.monotonic() >= at


def _ended_well(s: Scenario, result: RunResult) -> bool:
    """After the driving process ended: True if the run succeeded; counts failed runs."""
    status = s.snapshot().status
    if status == "failed":
        result.failed_before_recovery += 1
    return status == "succeeded"


def _kill_a_worker(s: Scenario, leaves_only: bool, rng: random.Random) -> bool:
    """SIGKILL one of the driving process's workers (running a leaf, if ``leaves_only``);
    waits up to a second for one to be there."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        workers = s.workers()
        if leaves_only:
            workers = [
                (pid, keys)
                for pid, keys in workers
                if keys and all(k.split(":")[0] not in PARENT_TASKS for k in keys)
            ]
        busy = [(pid, keys) for pid, keys in workers if keys]
        if busy or workers:
            pid, keys = rng.choice(busy or workers)
            return s.kill_worker(pid, keys) is not None
        if s.driving is None or not s.driving.alive():
            return False
        time.sleep(0.05)
    return False
