"""Retries, backoff, non-recoverable errors, run and queue timeouts, and where each
setting comes from (environment, task, override)."""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="retry")


class Flaky(RuntimeError):
    pass


def store() -> Any:
    return get_session().store


def attempts_of(run: heddle.Run, task_name: str) -> list[Any]:
    ids = {a.id for a in run.actions() if a.task_name == task_name}
    return [t for t in store().attempts_of_run(run.id) if t.action_id in ids]


def error_of(record: Any) -> dict[str, Any]:
    return json.loads(record.error or "{}")  # type: ignore[no-any-return]


# -- retries ---------------------------------------------------------------------------


def test_retries_succeed_on_the_third_attempt_and_record_each_attempt(home: Path) -> None:
    tries: list[int] = []

    @env.task(retries=3)
    async def flaky(x: int) -> int:
        tries.append(x)
        if len(tries) < 3:
            raise Flaky(f"try {len(tries)}")
        return x * 10

    run = heddle.run(flaky, 2)
    assert run.outputs() == 20
    assert len(tries) == 3
    action = next(a for a in run.actions() if a.task_name == "retry.flaky")
    assert (action.status, action.attempts) == ("succeeded", 3)
    attempts = attempts_of(run, "retry.flaky")
    assert [(t.number, t.status) for t in attempts] == [
        (1, "failed"),
        (2, "failed"),
        (3, "succeeded"),
    ]
    assert [error_of(t)["message"] for t in attempts[:2]] == ["try 1", "try 2"]


def test_exhausted_retries_raise_the_last_error(home: Path) -> None:
    tries: list[int] = []

    @env.task(retries=2)
    async def always(x: int) -> int:
        tries.append(x)
        raise Flaky(f"failure {len(tries)}")

    run = heddle.run(always, 1)
    with pytest.raises(Flaky, match="failure 3"):
        run.outputs()
    assert len(tries) == 3
    assert [t.status for t in attempts_of(run, "retry.always")] == ["failed"] * 3


def test_retry_strategy_waits_with_growing_backoff(home: Path) -> None:
    starts: list[float] = []

    @env.task(retries=heddle.RetryStrategy(count=2, backoff=0.1, backoff_factor=2.0))
    async def flaky(x: int) -> int:
        starts.append(time.monotonic())
        if len(starts) < 3:
            raise Flaky("not yet")
        return x

    assert heddle.run(flaky, 1).outputs() == 1
    first_gap, second_gap = starts[1] - starts[0], starts[2] - starts[1]
    assert first_gap >= 0.1
    assert second_gap >= 0.2
    assert second_gap < 1.0


def test_retries_without_backoff_do_not_wait(home: Path) -> None:
    starts: list[float] = []

    @env.task(retries=2)
    async def flaky(x: int) -> int:
        starts.append(time.monotonic())
        if len(starts) < 3:
            raise Flaky("not yet")
        return x

    assert heddle.run(flaky, 1).outputs() == 1
    assert starts[-1] - starts[0] < 0.1


def test_non_recoverable_error_skips_remaining_retries(home: Path) -> None:
    tries: list[int] = []

    @env.task(retries=5)
    async def doomed(x: int) -> int:
        tries.append(x)
        raise heddle.NonRecoverableError("the input file is gone for good")

    run = heddle.run(doomed, 1)
    with pytest.raises(heddle.NonRecoverableError, match="gone for good"):
        run.outputs()
    assert len(tries) == 1
    assert [t.status for t in attempts_of(run, "retry.doomed")] == ["failed"]


def test_retried_parent_does_not_rerun_a_child_that_succeeded(home: Path) -> None:
    child_runs: list[int] = []
    parent_runs: list[int] = []

    @env.task
    async def expensive(x: int) -> int:
        child_runs.append(x)
        return x * 2

    @env.task(retries=1)
    async def main(x: int) -> int:
        parent_runs.append(x)
        value = await expensive(x)
        if len(parent_runs) == 1:
            raise Flaky("after the child succeeded")
        return value

    run = heddle.run(main, 3)
    assert run.outputs() == 6
    assert len(parent_runs) == 2
    # DESIGN §4: a task that succeeded is never run again in the same run.
    assert child_runs == [3]
    child_attempts = attempts_of(run, "retry.expensive")
    assert [t.number for t in child_attempts] == [1]


# -- timeouts --------------------------------------------------------------------------


def test_timeout_stops_a_slow_async_task_quickly(home: Path) -> None:
    @env.task(timeout=0.2)
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    started = time.perf_counter()
    run = heddle.run(slow, 1)
    with pytest.raises(heddle.TimeoutError) as info:
        run.outputs()
    assert time.perf_counter() - started < 2.0
    error = info.value
    assert isinstance(error, builtins.TimeoutError)
    assert (error.task, error.seconds, error.phase) == ("retry.slow", 0.2, "run")
    assert "retry.slow" in str(error) and "0.2s" in str(error)
    (action,) = run.actions()
    assert action.status == "failed"
    assert error_of(action)["kind"] == "timeout"


def test_caller_catches_child_timeout_as_builtin_timeout_error(home: Path) -> None:
    @env.task(timeout=dt.timedelta(milliseconds=150))
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    @env.task
    async def main(x: int) -> str:
        try:
            await slow(x)
        except TimeoutError as exc:  # the builtin: code that knows nothing of heddle
            return type(exc).__name__
        return "finished"

    started = time.perf_counter()
    assert heddle.run(main, 1).outputs() == "TimeoutError"
    assert time.perf_counter() - started < 2.0


def test_sync_task_past_its_timeout_fails_at_the_deadline(home: Path) -> None:
    @env.task(timeout=0.2)
    def slow(x: int) -> int:
        time.sleep(0.8)
        return x

    started = time.perf_counter()
    with pytest.raises(heddle.TimeoutError):
        heddle.run(slow, 1).outputs()
    assert time.perf_counter() - started < 0.7


def _queued_timeout_run() -> tuple[heddle.Run, list[Any]]:
    @env.task(timeout=heddle.Timeout(max_queued_time=0.15))
    async def hold(x: int) -> int:
        await asyncio.sleep(0.4)
        return x

    @env.task
    async def main(n: int) -> list[str]:
        results = await heddle.map(hold, range(n), concurrency=1, return_exceptions=True)
        return [repr(r) for r in results]

    run = heddle.run(main, 3)
    return run, run.outputs()


def test_children_queued_past_max_queued_time_fail_with_queued_timeout(home: Path) -> None:
    @env.task(timeout=heddle.Timeout(max_queued_time=0.15))
    async def hold(x: int) -> int:
        await asyncio.sleep(0.4)
        return x

    @env.task
    async def main(n: int) -> list[str]:
        results = await heddle.map(hold, range(n), concurrency=1, return_exceptions=True)
        out = []
        for r in results:
            if isinstance(r, heddle.TimeoutError):
                out.append(f"timeout {r.phase}")
            else:
                out.append(f"value {r}")
        return out

    started = time.perf_counter()
    assert heddle.run(main, 3).outputs() == ["value 0", "timeout queued", "timeout queued"]
    assert time.perf_counter() - started < 1.0


def test_children_timed_out_in_the_queue_are_recorded_failed(home: Path) -> None:
    run, outputs = _queued_timeout_run()
    assert sum("queued" in o for o in outputs) == 2
    children = [a for a in run.actions() if a.task_name == "retry.hold"]
    assert sorted(a.status for a in children) == ["failed", "failed", "succeeded"]
    failed = [a for a in children if a.status == "failed"]
    assert all(error_of(a)["kind"] == "timeout" for a in failed)


# -- where the settings come from ------------------------------------------------------


def test_override_changes_retries_and_timeout(home: Path) -> None:
    tries: list[int] = []

    @env.task
    async def flaky(x: int) -> int:
        tries.append(x)
        if len(tries) < 3:
            raise Flaky("again")
        return x

    @env.task
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    @env.task
    async def main(x: int) -> str:
        value = await flaky.override(retries=2)(x)
        try:
            await slow.override(timeout=0.1)(x)
        except heddle.TimeoutError as exc:
            return f"{value} then timeout after {exc.seconds}s"
        return "no timeout"

    assert heddle.run(main, 7).outputs() == "7 then timeout after 0.1s"
    assert len(tries) == 3
    # The original task is unchanged.
    assert flaky.retry.count == 0 and slow.timeout is None


def test_environment_defaults_apply_and_task_settings_win(home: Path) -> None:
    strict_env = heddle.TaskEnvironment(name="strict", retries=2, timeout=0.15)
    tries: dict[str, int] = {"inherit": 0, "own": 0}

    @strict_env.task
    async def inherit(x: int) -> int:
        tries["inherit"] += 1
        raise Flaky("x")

    @strict_env.task(retries=0, timeout=2.0)
    async def own(x: int) -> int:
        tries["own"] += 1
        await asyncio.sleep(0.3)  # past the environment's timeout, within its own
        raise Flaky("y")

    @strict_env.task
    async def slow(x: int) -> int:
        await asyncio.sleep(5)
        return x

    @strict_env.task(timeout=5.0)
    async def main(x: int) -> list[str]:
        out = []
        for t in (inherit, own, slow):
            try:
                await t(x)
            except heddle.TimeoutError:
                out.append("timeout")
            except Flaky:
                out.append("flaky")
        return out

    assert heddle.run(main, 1).outputs() == ["flaky", "flaky", "timeout"]
    assert tries == {"inherit": 3, "own": 1}
