"""Whole runs on PostgreSQL: a wide fan-out, retries, the cache across runs, and
recovering a failed run. Skipped without HEDDLE_TEST_POSTGRES_URL."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="pg")

calls: collections.Counter[str] = collections.Counter()
broken: set[int] = set()


class Transient(RuntimeError):
    pass


@env.task
async def square(x: int) -> int:
    calls["square"] += 1
    return x * x


@env.task
async def fan_out(n: int) -> int:
    return sum(await heddle.map(square, range(n)))


@env.task(retries=2)
async def flaky(x: int) -> int:
    calls["flaky"] += 1
    if calls["flaky"] < 3:
        raise Transient(f"attempt {calls['flaky']}")
    return x


@env.task(cache="auto")
async def cached(x: int) -> int:
    calls["cached"] += 1
    return x + 1000


@env.task
async def use_cache(x: int) -> int:
    return await cached(x)


@env.task
async def step(i: int) -> int:
    calls[f"step{i}"] += 1
    if i in broken:
        raise Transient(f"step {i} is broken")
    return i * 10


@env.task
async def pipeline(n: int) -> list[int]:
    return [await step(i) for i in range(n)]


@pytest.fixture
def pg_home(pg_url: str, tmp_path: Path) -> Iterator[str]:
    heddle.init(tmp_path / "home", db_url=pg_url, executor="inline")
    calls.clear()
    broken.clear()
    yield pg_url
    broken.clear()


def test_fan_out_of_500_children_on_postgres(pg_home: str) -> None:
    started = time.perf_counter()
    run = heddle.run(fan_out, 500)
    assert run.outputs() == sum(i * i for i in range(500))
    assert time.perf_counter() - started < 20
    assert calls["square"] == 500
    assert get_session().store.count_actions([run.id]) == {run.id: {"succeeded": 501}}
    assert get_session().store.dialect == "postgresql"


def test_retries_are_recorded_on_postgres(pg_home: str) -> None:
    run = heddle.run(flaky, 5)
    assert run.outputs() == 5
    attempts = get_session().store.attempts_of_run(run.id)
    assert [(t.number, t.status) for t in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]


def test_cache_hits_across_runs_on_postgres(pg_home: str) -> None:
    first = heddle.run(use_cache, 7)
    second = heddle.run(use_cache, 7)
    assert first.outputs() == second.outputs() == 1007
    assert calls["cached"] == 1
    hit = next(a for a in second.actions() if a.task_name == "pg.cached")
    assert hit.cached


def test_recover_a_failed_run_replays_what_succeeded(pg_home: str) -> None:
    broken.add(2)
    run = heddle.run(pipeline, 4)
    with pytest.raises(Transient, match="step 2 is broken"):
        run.outputs()
    assert run.status == "failed"
    assert dict(calls) == {"step0": 1, "step1": 1, "step2": 1}

    broken.clear()
    recovered = heddle.recover(run.id)
    assert recovered.id == run.id
    assert recovered.outputs() == [0, 10, 20, 30]
    assert heddle.get_run(run.id).status == "succeeded"
    # Steps 0 and 1 came back from the store; step 2 ran again; step 3 ran once.
    assert dict(calls) == {"step0": 1, "step1": 1, "step2": 2, "step3": 1}
    store = get_session().store
    steps = [a for a in store.actions_of_run(run.id) if a.task_name == "pg.step"]
    assert len(steps) == 4
    assert all(a.status == "succeeded" for a in steps)
    step2 = next(a for a in steps if a.output is not None and a.attempts == 2)
    attempts = [t for t in store.attempts_of_run(run.id) if t.action_id == step2.id]
    assert [(t.number, t.status) for t in attempts] == [(1, "failed"), (2, "succeeded")]


def test_recover_refuses_a_run_that_succeeded(pg_home: str) -> None:
    run = heddle.run(pipeline, 1)
    assert run.outputs() == [0]
    with pytest.raises(heddle.RecoveryError, match="already succeeded"):
        heddle.recover(run.id)
