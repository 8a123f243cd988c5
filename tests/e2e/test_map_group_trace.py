"""heddle.map (order, concurrency, errors, zipping), heddle.group, heddle.trace and
heddle.durable: what they return and what they record."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import heddle
from heddle._runtime.ids import action_id, input_hash
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="fan")


class Odd(ValueError):
    pass


def children_of(run: heddle.Run, name: str) -> list[Any]:
    return sorted((a for a in run.actions() if a.task_name == name), key=lambda a: a.seq)


def decoded_output(action: Any) -> Any:
    return msgspec.msgpack.decode(get_session().literals.from_literal(action.output))


# -- heddle.map ------------------------------------------------------------------------


def test_map_returns_results_in_input_order(home: Path) -> None:
    finished: list[int] = []

    @env.task
    async def late(i: int) -> int:
        await asyncio.sleep(0.02 * (5 - i))  # the first input finishes last
        finished.append(i)
        return i * i

    @env.task
    async def main(n: int) -> list[int]:
        return await heddle.map(late, range(n))

    run = heddle.run(main, 5)
    assert run.outputs() == [0, 1, 4, 9, 16]
    assert finished == [4, 3, 2, 1, 0]
    assert [a.seq for a in children_of(run, "fan.late")] == [1, 2, 3, 4, 5]


def test_map_concurrency_limits_children_running_at_once(home: Path) -> None:
    running = 0
    peak = 0

    @env.task
    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.03)
        running -= 1
        return i

    @env.task
    async def main(n: int) -> list[int]:
        return await heddle.map(work, range(n), concurrency=2)

    started = time.perf_counter()
    assert heddle.run(main, 8).outputs() == list(range(8))
    assert peak == 2
    assert time.perf_counter() - started >= 4 * 0.03


def test_map_without_limit_runs_children_together(home: Path) -> None:
    running = 0
    peak = 0

    @env.task
    async def work(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return i

    @env.task
    async def main(n: int) -> list[int]:
        return await heddle.map(work, range(n))

    heddle.run(main, 10)
    assert peak == 10


def test_map_return_exceptions_puts_errors_in_place(home: Path) -> None:
    @env.task
    async def even_only(i: int) -> int:
        if i % 2:
            raise Odd(f"{i} is odd")
        return i

    @env.task
    async def main(n: int) -> list[str]:
        results = await heddle.map(even_only, range(n), return_exceptions=True)
        return [f"{type(r).__name__}: {r}" if isinstance(r, Exception) else str(r) for r in results]

    run = heddle.run(main, 4)
    assert run.outputs() == ["0", "Odd: 1 is odd", "2", "Odd: 3 is odd"]
    statuses = [a.status for a in children_of(run, "fan.even_only")]
    assert statuses == ["succeeded", "failed", "succeeded", "failed"]


def test_map_without_return_exceptions_raises_the_child_error(home: Path) -> None:
    @env.task
    async def even_only(i: int) -> int:
        if i % 2:
            raise Odd(f"{i} is odd")
        return i

    @env.task
    async def main(n: int) -> list[int]:
        return await heddle.map(even_only, range(n))

    with pytest.raises(Odd, match="is odd"):
        heddle.run(main, 3).outputs()


def test_map_over_two_iterables_zips_them(home: Path) -> None:
    @env.task
    async def label(name: str, n: int) -> str:
        return f"{name}={n}"

    @env.task
    async def main(names: list[str], ns: list[int]) -> list[str]:
        return await heddle.map(label, names, ns)

    assert heddle.run(main, ["a", "b", "c"], [1, 2, 3]).outputs() == ["a=1", "b=2", "c=3"]


def test_map_outside_a_run_calls_the_function(home: Path) -> None:
    @env.task
    def square(x: int) -> int:
        return x * x

    @env.task
    async def cube(x: int) -> int:
        return x**3

    assert list(heddle.map(square, [1, 2, 3])) == [1, 4, 9]

    async def use_async() -> list[int]:
        return await heddle.map(cube, [1, 2, 3], concurrency=1)

    assert asyncio.run(use_async()) == [1, 8, 27]
    assert get_session().store.list_runs() == []


def test_map_refuses_bad_arguments(home: Path) -> None:
    @env.task
    async def one(x: int) -> int:
        return x

    for bad in (0, -1, True, 1.5):
        with pytest.raises(heddle.ConfigError, match="concurrency"):
            heddle.map(one, [1], concurrency=bad)  # type: ignore[arg-type]
    with pytest.raises(heddle.HeddleError, match="needs a task"):
        heddle.map(len, [[1]])  # type: ignore[arg-type]
    with pytest.raises(heddle.HeddleError, match="at least one iterable"):
        heddle.map(one)


@env.task
async def scale(x: int, factor: int, offset: int = 0) -> int:
    return x * factor + offset


@env.task
def tag(name: str, constant: str, batch: int) -> str:
    return f"{name}/{constant}/{batch}"


def test_map_binds_fixed_parameters_from_a_partial_or_keywords(executor_home: str) -> None:
    @env.task
    async def main(n: int) -> list[Any]:
        xs = list(range(1, n + 1))
        return [
            await heddle.map(functools.partial(scale, factor=3), xs),
            await heddle.map(scale, xs, factor=10, offset=1),
            await heddle.map(functools.partial(scale, 2), xs),  # x fixed: maps over factor
            await heddle.map(functools.partial(scale, factor=2), xs, [100] * n),
            # As in Flyte's example: the fixed middle parameter is skipped, the iterables
            # fill the parameters left, in order.
            await heddle.map(functools.partial(tag, constant="c"), ["a", "b"], [7, 8]),
            await heddle.map(tag, ["a"], [9], constant="k", group_name="tags"),
        ]

    run = heddle.run(main, 3)
    assert run.outputs() == [
        [3, 6, 9],
        [11, 21, 31],
        [2, 4, 6],
        [102, 104, 106],
        ["a/c/7", "b/c/8"],
        ["a/k/9"],
    ]
    tagged = [(decoded_output(a), a.group_name) for a in children_of(run, "fan.tag")]
    assert tagged == [("a/c/7", None), ("b/c/8", None), ("a/k/9", "tags")]


def test_map_with_a_partial_in_a_sync_task_and_outside_a_run(executor_home: str) -> None:
    @env.task
    def main(n: int) -> list[int]:
        return list(heddle.map(functools.partial(scale, factor=5), range(n), offset=1))

    assert heddle.run(main, 3).outputs() == [1, 6, 11]
    assert list(heddle.map(functools.partial(scale, factor=5), [2])) == [10]


def test_map_refuses_what_it_cannot_bind_before_recording_anything(home: Path) -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(heddle.HeddleError, match=r"needs a task or a functools\.partial of one"):
        heddle.map(functools.partial(plain), [1])
    with pytest.raises(heddle.HeddleError, match=r"needs a task.*got <function"):
        heddle.map(plain, [1])  # type: ignore[arg-type]
    bad: list[tuple[Any, str]] = [
        (lambda: heddle.map(scale, [1], factr=2), "unexpected keyword argument 'factr'"),
        (
            lambda: heddle.map(functools.partial(scale, factor=2), [1], factor=3),
            "'factor' is fixed twice",
        ),
        (lambda: heddle.map(scale, [1], [2], [3], [4]), "4 iterables.*3 parameters left"),
        (lambda: heddle.map(scale, [1]), "parameter 'factor': missing a value"),
    ]
    for make, message in bad:
        with pytest.raises(heddle.InputError, match=message):
            make()

    @env.task
    async def main(n: int) -> list[int]:
        return await heddle.map(scale, ["one"], factor=2)

    run = heddle.run(main, 1)
    with pytest.raises(heddle.InputError, match="parameter 'x'"):
        run.outputs()
    assert children_of(run, "fan.scale") == []


def test_map_of_many_children_records_each_in_input_order(home: Path) -> None:
    @env.task
    async def ident(i: int) -> int:
        return i

    @env.task
    async def main(n: int) -> int:
        return sum(await heddle.map(ident, range(n), concurrency=50))

    run = heddle.run(main, 300)
    assert run.outputs() == sum(range(300))
    kids = children_of(run, "fan.ident")
    assert len(kids) == 300
    assert [decoded_output(a) for a in kids] == list(range(300))


# -- heddle.group ----------------------------------------------------------------------


def test_group_names_are_recorded_on_actions_and_nest(home: Path) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    async def inner(x: int) -> int:
        # A group of the caller does not leak into the child's own children.
        return await leaf(x + 100)

    @env.task
    async def main(x: int) -> int:
        total = await leaf(0)
        with heddle.group("train"):
            total += await leaf(1)
            with heddle.group("eval"):
                total += sum(await asyncio.gather(leaf(2), inner(3)))
            total += await leaf(4)
        return total + await leaf(5)

    run = heddle.run(main, 0)
    assert run.outputs() == 0 + 1 + 2 + 103 + 4 + 5
    groups = {(a.task_name, decoded_output(a)): a.group_name for a in run.actions() if a.parent_id}
    assert groups == {
        ("fan.leaf", 0): None,
        ("fan.leaf", 1): "train",
        ("fan.leaf", 2): "train/eval",
        ("fan.inner", 103): "train/eval",
        ("fan.leaf", 103): None,
        ("fan.leaf", 4): "train",
        ("fan.leaf", 5): None,
    }


def test_group_applies_to_mapped_children(home: Path) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    async def main(n: int) -> list[int]:
        with heddle.group("batch"):
            return await heddle.map(leaf, range(n))

    run = heddle.run(main, 3)
    assert [a.group_name for a in children_of(run, "fan.leaf")] == ["batch"] * 3


def test_group_of_a_call_is_decided_where_it_is_awaited(executor_home: str) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    def sync_leaf(x: int) -> int:
        return x

    @env.task
    async def main(x: int) -> list[int]:
        made_outside = leaf(1)
        gathered_later = [leaf(2), leaf(3)]
        mapped_later = heddle.map(leaf, [4, 5])
        scheduled_outside = asyncio.create_task(leaf(6))
        with heddle.group("g"):
            out = [await made_outside]
            out += await asyncio.gather(*gathered_later)
            out += await mapped_later
            scheduled_inside = asyncio.create_task(leaf(7))
            made_inside = leaf(8)
            out.append(await sync_leaf.aio(9))
            with heddle.group("inner"):
                await ask_model("p", 10)
                out.append(10)
        out.append(await made_inside)  # awaited outside: not in the group
        out.append(await scheduled_inside)  # started inside: in the group
        out.append(await scheduled_outside)  # started outside: not in the group
        return out

    run = heddle.run(main, 0)
    assert run.outputs() == [1, 2, 3, 4, 5, 9, 10, 8, 7, 6]
    kids = {
        decoded_output(a) if a.kind == "task" else a.kind: a.group_name
        for a in run.actions()
        if a.parent_id
    }
    assert kids == {
        1: "g",
        2: "g",
        3: "g",
        4: "g",
        5: "g",
        6: None,
        7: "g",
        8: None,
        9: "g",
        "trace": "g/inner",
    }


def test_call_order_not_await_order_numbers_children(executor_home: str) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    async def main(x: int) -> list[int]:
        first, second = leaf(x), leaf(x)  # identical calls: n = 0, then n = 1
        with heddle.group("late"):
            b = await second
        return [await first, b]

    run = heddle.run(main, 3)
    assert run.outputs() == [3, 3]
    first, second = children_of(run, "fan.leaf")
    assert (first.seq, first.group_name) == (1, None)
    assert (second.seq, second.group_name) == (2, "late")
    # The ids come from call order: n counts identical calls when they are made.
    root = next(a for a in run.actions() if a.parent_id is None)
    assert first.inputs is not None
    ih = input_hash(get_session().literals.from_literal(first.inputs))
    n_of = {action_id(run.id, root.id, "fan.leaf", ih, n): n for n in (0, 1)}
    assert [n_of[first.id], n_of[second.id]] == [0, 1]


def test_sync_task_calls_inside_a_group_are_in_it(executor_home: str) -> None:
    @env.task
    def leaf(x: int) -> int:
        return x

    @env.task
    def main(x: int) -> int:
        with heddle.group("sync"):
            total = leaf(x) + sum(heddle.map(leaf, [1, 2]))
        return total + leaf(100)

    run = heddle.run(main, 5)
    assert run.outputs() == 108
    groups = {decoded_output(a): a.group_name for a in children_of(run, "fan.leaf")}
    assert groups == {5: "sync", 1: "sync", 2: "sync", 100: None}


def test_group_name_must_be_a_non_empty_string() -> None:
    for bad in ("", "   ", None, 3):
        with pytest.raises(heddle.ConfigError, match="group name"), heddle.group(bad):  # type: ignore[arg-type]
            pass


# -- heddle.trace ----------------------------------------------------------------------

trace_calls: list[int] = []


@heddle.trace
async def ask_model(prompt: str, temperature: int) -> str:
    trace_calls.append(temperature)
    return f"answer to {prompt!r} at {temperature}"


@heddle.trace
async def flaky_api(x: int) -> int:
    raise ConnectionError(f"api down for {x}")


@heddle.trace
def lookup(key: str) -> int:
    trace_calls.append(len(key))
    return len(key)


@heddle.trace
def broken_lookup(key: str) -> int:
    raise KeyError(key)


def test_trace_records_a_step_under_its_task(home: Path) -> None:
    trace_calls.clear()

    @env.task
    async def main(prompt: str) -> str:
        return await ask_model(prompt, 1)

    run = heddle.run(main, "hi")
    assert run.outputs() == "answer to 'hi' at 1"
    root = next(a for a in run.actions() if a.parent_id is None)
    (step,) = [a for a in run.actions() if a.kind == "trace"]
    assert step.parent_id == root.id
    assert step.status == "succeeded"
    assert step.task_name.endswith("ask_model")
    assert decoded_output(step) == "answer to 'hi' at 1"
    assert trace_calls == [1]


def test_trace_called_twice_with_same_inputs_records_two_steps(home: Path) -> None:
    trace_calls.clear()

    @env.task
    async def main(prompt: str) -> list[str]:
        return [await ask_model(prompt, 5), await ask_model(prompt, 5), await ask_model(prompt, 6)]

    run = heddle.run(main, "q")
    assert len(run.outputs()) == 3
    assert trace_calls == [5, 5, 6]
    steps = sorted((a for a in run.actions() if a.kind == "trace"), key=lambda a: a.seq)
    assert len({s.id for s in steps}) == 3
    assert [s.seq for s in steps] == [1, 2, 3]


def test_failing_trace_is_recorded_failed_and_reraised(home: Path) -> None:
    @env.task
    async def main(x: int) -> str:
        try:
            await flaky_api(x)
        except ConnectionError as exc:
            return f"caught {exc}"
        return "no error"

    run = heddle.run(main, 9)
    assert run.outputs() == "caught api down for 9"
    (step,) = [a for a in run.actions() if a.kind == "trace"]
    assert step.status == "failed"
    assert "api down for 9" in (step.error or "")


def test_trace_in_a_sync_task_records_success_and_failure(home: Path) -> None:
    trace_calls.clear()

    @env.task
    def main(key: str) -> int:
        with contextlib.suppress(KeyError):
            broken_lookup(key)
        return lookup(key)

    run = heddle.run(main, "abcd")
    assert run.outputs() == 4
    steps = sorted((a for a in run.actions() if a.kind == "trace"), key=lambda a: a.seq)
    assert [(s.task_name.rsplit(".", 1)[-1], s.status) for s in steps] == [
        ("broken_lookup", "failed"),
        ("lookup", "succeeded"),
    ]


def test_trace_outside_a_run_just_calls_the_function() -> None:
    trace_calls.clear()
    assert asyncio.run(ask_model("x", 2)) == "answer to 'x' at 2"
    assert lookup("abc") == 3
    assert trace_calls == [2, 3]


def test_trace_checks_its_inputs(home: Path) -> None:
    @env.task
    async def main(x: int) -> str:
        return await ask_model("p", "hot")  # type: ignore[arg-type]

    with pytest.raises(heddle.InputError, match="temperature"):
        heddle.run(main, 1).outputs()


def test_trace_inside_a_group_records_the_group(home: Path) -> None:
    @env.task
    async def main(x: int) -> str:
        with heddle.group("llm"):
            return await ask_model("g", x)

    run = heddle.run(main, 3)
    (step,) = [a for a in run.actions() if a.kind == "trace"]
    assert step.group_name == "llm"


# -- heddle.durable --------------------------------------------------------------------


def test_durable_now_returns_utc_and_records_it(home: Path) -> None:
    seen: list[dt.datetime] = []

    @env.task
    async def main(x: int) -> float:
        now = heddle.durable.now()
        seen.append(now)
        return now.timestamp()

    before = time.time()
    run = heddle.run(main, 1)
    stamp = run.outputs()
    (now,) = seen
    assert now.tzinfo == dt.UTC
    assert before - 1 <= stamp <= time.time() + 1
    (step,) = [a for a in run.actions() if a.kind == "now"]
    assert step.status == "succeeded"
    assert decoded_output(step) == pytest.approx(stamp)


def test_durable_sleep_sleeps_and_is_recorded(home: Path) -> None:
    @env.task
    async def main(seconds: float) -> float:
        started = time.monotonic()
        await heddle.durable.sleep(seconds)
        return time.monotonic() - started

    run = heddle.run(main, 0.1)
    assert 0.1 <= run.outputs() < 1.0
    (step,) = [a for a in run.actions() if a.kind == "sleep"]
    assert step.status == "succeeded"
    assert step.finished_at is not None and step.finished_at - step.started_at >= 0.09


def test_durable_sleep_called_plainly_in_a_sync_task_sleeps_durably(executor_home: str) -> None:
    @env.task
    def nap(seconds: float) -> float:
        started = time.monotonic()
        heddle.durable.sleep(seconds)  # no await: sync code, as in Flyte 2
        return time.monotonic() - started

    @env.task
    async def main(seconds: float) -> float:
        return await nap.aio(seconds)

    run = heddle.run(main, 0.2)
    assert 0.2 <= run.outputs() < 2.0
    (step,) = [a for a in run.actions() if a.kind == "sleep"]
    assert step.status == "succeeded" and step.started_at is not None
    assert step.finished_at is not None and step.finished_at - step.started_at >= 0.19


def test_durable_sleep_aio_and_now_aio_in_async_tasks(executor_home: str) -> None:
    @env.task
    async def main(seconds: float) -> list[float]:
        before = await heddle.durable.now.aio()
        await heddle.durable.sleep.aio(seconds)
        await heddle.durable.sleep(dt.timedelta(seconds=seconds))  # still awaitable
        return [before.timestamp(), heddle.durable.time()]

    run = heddle.run(main, 0.1)
    before, after = run.outputs()
    assert after - before >= 0.2
    kinds = sorted(a.kind for a in run.actions() if a.kind != "task")
    assert kinds == ["now", "now", "sleep", "sleep"]


def test_durable_sleep_in_a_sync_task_is_recorded(home: Path) -> None:
    @env.task
    def main(seconds: float) -> float:
        started = time.monotonic()
        heddle.durable.sleep_sync(dt.timedelta(seconds=seconds))
        return time.monotonic() - started

    run = heddle.run(main, 0.05)
    assert run.outputs() >= 0.05
    assert [(a.kind, a.status) for a in run.actions() if a.kind != "task"] == [
        ("sleep", "succeeded")
    ]


def test_durable_outside_a_run_behaves_like_the_plain_calls() -> None:
    assert heddle.durable.now().tzinfo == dt.UTC
    assert abs(heddle.durable.time() - time.time()) < 1
    started = time.monotonic()
    assert heddle.durable.sleep(0.02) is None  # sync code: slept right here
    assert time.monotonic() - started >= 0.02

    async def in_async_code() -> dt.datetime:
        await heddle.durable.sleep(0.02)
        await heddle.durable.sleep.aio(0.02)
        return await heddle.durable.now.aio()

    started = time.monotonic()
    assert asyncio.run(in_async_code()).tzinfo == dt.UTC
    assert time.monotonic() - started >= 0.04


def test_durable_sleep_refuses_bad_durations_when_called() -> None:
    with pytest.raises(heddle.ConfigError, match="non-negative"):
        heddle.durable.sleep(-1)
    with pytest.raises(heddle.ConfigError, match="non-negative"):
        heddle.durable.sleep.aio(-1)  # type: ignore[unused-coroutine]
    with pytest.raises(heddle.ConfigError):
        heddle.durable.sleep_sync("1s")  # type: ignore[arg-type]


def test_group_names_longer_than_the_store_allows_are_refused_on_every_backend(
    any_home: str,
) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    async def main(x: int) -> int:
        with heddle.group("stage-" + "g" * 250):
            return await leaf(x)

    run = heddle.run(main, 1)
    with pytest.raises(heddle.ConfigError, match="the limit is 200"):
        run.outputs()
    assert children_of(run, "fan.leaf") == []
