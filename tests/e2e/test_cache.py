"""Caching of task outputs across runs: keys, versions, ignored inputs, override,
and concurrent identical calls waiting for one computation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="cache")


class Boom(RuntimeError):
    pass


def child_actions(run: heddle.Run, task_name: str) -> list[Any]:
    return sorted(
        (a for a in run.actions() if a.task_name == task_name), key=lambda a: (a.seq, a.id)
    )


def make_counter(cache: Any, name: str = "cache.count") -> tuple[Any, Any, list[int]]:
    """A cached task that counts its executions, and a parent that calls it and
    discards the value (so these tests see caching, not the value it returns)."""
    calls: list[int] = []

    @env.task(name=name, cache=cache)
    async def count(x: int, verbose: bool = False) -> int:
        calls.append(x)
        return 100 + x

    @env.task(name=name + "_parent")
    async def parent(x: int, verbose: bool = False) -> None:
        await count(x, verbose)

    return count, parent, calls


def test_second_run_with_same_inputs_does_not_execute_the_body(any_home: str) -> None:
    _count, parent, calls = make_counter("auto")
    first = heddle.run(parent, 1)
    second = heddle.run(parent, 1)
    assert first.status == second.status == "succeeded"
    assert calls == [1]
    (miss,) = child_actions(first, "cache.count")
    (hit,) = child_actions(second, "cache.count")
    assert (miss.cached, hit.cached) == (False, True)
    assert hit.status == "succeeded"
    assert hit.cache_key == miss.cache_key is not None


def test_different_inputs_miss_the_cache(home: Path) -> None:
    _count, parent, calls = make_counter("auto")
    for x in (1, 2, 1, 3):
        heddle.run(parent, x)
    assert calls == [1, 2, 3]


def test_tasks_without_cache_always_execute(home: Path) -> None:
    for setting in (None, False, "disable", heddle.Cache(behavior="disable")):
        _count, parent, calls = make_counter(setting, name=f"cache.off_{id(setting)}")
        heddle.run(parent, 1)
        heddle.run(parent, 1)
        assert calls == [1, 1], setting


def test_environment_cache_setting_applies_to_its_tasks(home: Path) -> None:
    cached_env = heddle.TaskEnvironment(name="cached", cache="auto")
    calls: list[int] = []

    @cached_env.task
    async def work(x: int) -> int:
        calls.append(x)
        return x

    @cached_env.task(cache=False)
    async def main(x: int) -> None:
        await work(x)

    heddle.run(main, 5)
    heddle.run(main, 5)
    assert calls == [5]


def test_cache_version_changes_the_key(home: Path) -> None:
    count, _parent, calls = make_counter(heddle.Cache(version="v1"))

    @env.task
    async def main(version: str) -> None:
        await count.override(cache=heddle.Cache(version=version))(1)

    for version in ("v1", "v2", "v1", "v2"):
        heddle.run(main, version)
    assert calls == [1, 1]


def test_explicit_cache_version_outlives_a_change_of_the_body(home: Path) -> None:
    calls: list[str] = []

    @env.task(name="cache.model", cache=heddle.Cache(version="v1"))
    async def old(x: int) -> int:
        calls.append("old")
        return x

    @env.task(name="cache.model", cache=heddle.Cache(version="v1"))
    async def new(x: int) -> int:
        calls.append("new")
        return x + 0  # a different body, same declared version

    @env.task
    async def main(which: str) -> None:
        await (old if which == "old" else new)(1)

    heddle.run(main, "old")
    heddle.run(main, "new")
    assert calls == ["old"]


def test_without_a_version_a_change_of_the_body_misses(home: Path) -> None:
    calls: list[str] = []

    @env.task(name="cache.model", cache="auto")
    async def old(x: int) -> int:
        calls.append("old")
        return x

    @env.task(name="cache.model", cache="auto")
    async def new(x: int) -> int:
        calls.append("new")
        return x + 0

    @env.task
    async def main(which: str) -> None:
        await (old if which == "old" else new)(1)

    heddle.run(main, "old")
    heddle.run(main, "new")
    assert calls == ["old", "new"]


def test_ignored_inputs_are_left_out_of_the_key(home: Path) -> None:
    _count, parent, calls = make_counter(heddle.Cache(ignored_inputs=("verbose",)))
    first = heddle.run(parent, 1, False)
    second = heddle.run(parent, 1, True)
    third = heddle.run(parent, 2, True)
    assert calls == [1, 2]
    keys = [child_actions(r, "cache.count")[0].cache_key for r in (first, second, third)]
    assert keys[0] == keys[1] != keys[2]


def test_without_ignored_inputs_every_input_is_in_the_key(home: Path) -> None:
    _count, parent, calls = make_counter("auto")
    heddle.run(parent, 1, False)
    heddle.run(parent, 1, True)
    assert calls == [1, 1]


def test_ignored_inputs_must_be_parameters() -> None:
    with pytest.raises(heddle.ConfigError, match="not parameters"):

        @env.task(cache=heddle.Cache(ignored_inputs=("nope",)))
        async def work(x: int) -> int:
            return x


def test_override_behavior_recomputes(home: Path) -> None:
    count, _parent, calls = make_counter("auto")

    @env.task
    async def main(mode: str) -> None:
        await (count if mode == "auto" else count.override(cache=mode))(1)

    heddle.run(main, "auto")
    run = heddle.run(main, "override")
    assert calls == [1, 1]
    (action,) = child_actions(run, "cache.count")
    assert action.cached is False


def test_override_replaces_the_cached_output(home: Path) -> None:
    outputs = iter([1, 2])

    @env.task(cache="auto")
    async def value(x: int) -> int:
        return next(outputs)

    @env.task
    async def main(mode: str) -> None:
        await (value if mode == "auto" else value.override(cache=mode))(1)

    heddle.run(main, "auto")
    run = heddle.run(main, "override")
    (action,) = child_actions(run, "cache.value")
    session = get_session()
    literal = session.store.cache_get(action.cache_key)
    assert literal is not None
    assert msgspec.msgpack.decode(session.literals.from_literal(literal)) == 2


def test_failed_calls_are_not_cached(home: Path) -> None:
    calls: list[int] = []

    @env.task(cache="auto")
    async def fragile(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise Boom("first time")
        return x

    @env.task
    async def main(x: int) -> None:
        await fragile(x)

    with pytest.raises(Boom):
        heddle.run(main, 1).outputs()
    heddle.run(main, 1)
    heddle.run(main, 1)
    assert calls == [1, 1]


def test_concurrent_identical_calls_compute_once(home: Path) -> None:
    calls: list[int] = []

    @env.task(cache="auto")
    async def slow(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.1)
        return x

    @env.task
    async def main(x: int) -> None:
        await asyncio.gather(*(slow(x) for _ in range(5)))

    run = heddle.run(main, 1)
    assert run.status == "succeeded"
    assert calls == [1]
    actions = child_actions(run, "cache.slow")
    assert len(actions) == 5
    assert sorted(a.cached for a in actions) == [False, True, True, True, True]


def test_concurrent_waiters_compute_their_own_when_the_first_fails(home: Path) -> None:
    calls: list[int] = []

    @env.task(cache="auto")
    async def fragile(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.05)
        if len(calls) == 1:
            raise Boom("first")
        return x

    @env.task
    async def main(x: int) -> list[str]:
        results = await asyncio.gather(*(fragile(x) for _ in range(3)), return_exceptions=True)
        return [type(r).__name__ for r in results]

    out = heddle.run(main, 1).outputs()
    assert out[0] == "Boom"
    assert "Boom" not in out[1:]
    assert len(calls) >= 2


def test_cache_hit_returns_the_stored_value(home: Path) -> None:
    @env.task(cache="auto")
    async def square(x: int) -> int:
        return x * x

    @env.task
    async def main(x: int) -> int:
        return await square(x)

    assert heddle.run(main, 3).outputs() == 9
    assert heddle.run(main, 3).outputs() == 9


def test_cached_root_task_run_succeeds_with_its_value(home: Path) -> None:
    @env.task(cache="auto")
    async def square(x: int) -> int:
        return x * x

    assert heddle.run(square, 4).outputs() == 16
    assert heddle.run(square, 4).outputs() == 16


def test_concurrent_identical_calls_all_return_the_value(home: Path) -> None:
    @env.task(cache="auto")
    async def slow(x: int) -> int:
        await asyncio.sleep(0.05)
        return x + 1

    @env.task
    async def main(x: int) -> list[int]:
        return list(await asyncio.gather(*(slow(x) for _ in range(5))))

    assert heddle.run(main, 1).outputs() == [2, 2, 2, 2, 2]
