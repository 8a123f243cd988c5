"""Whole runs of tasks: async and sync bodies, errors crossing task boundaries, the
run handle, typed values between tasks, and the recorded action tree."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import threading
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="tasks")


class QuotaExceeded(ValueError):
    """A user exception type the parent catches by its own class."""


class LockedError(Exception):
    """Holds a lock, so it cannot be pickled: the caller can only get a TaskError."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class TwoArgError(Exception):
    """Pickles, but cannot be rebuilt: unpickling calls __init__ with one argument."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Sample:
    when: dt.datetime
    tags: set[str]
    pair: tuple[int, str]
    maybe: int | None
    color: Color


class Model(pydantic.BaseModel):
    name: str
    scores: list[float]


def store() -> Any:
    return get_session().store


# -- async tasks -----------------------------------------------------------------------


def test_async_parent_awaits_children_and_returns_their_results(home: Path) -> None:
    @env.task
    async def double(x: int) -> int:
        return 2 * x

    @env.task
    async def main(n: int) -> int:
        total = 0
        for i in range(n):
            total += await double(i)
        return total

    run = heddle.run(main, 4)
    assert run.outputs() == 2 * (0 + 1 + 2 + 3)
    assert run.status == "succeeded"
    children = [a for a in run.actions() if a.task_name == "tasks.double"]
    assert len(children) == 4
    assert all(a.status == "succeeded" for a in children)


def test_gathered_children_run_concurrently(home: Path) -> None:
    @env.task
    async def nap(i: int) -> int:
        await asyncio.sleep(0.3)
        return i

    @env.task
    async def main(n: int) -> list[int]:
        return list(await asyncio.gather(*(nap(i) for i in range(n))))

    started = time.perf_counter()
    assert heddle.run(main, 6).outputs() == [0, 1, 2, 3, 4, 5]
    # Six 0.3 s naps one after another would take 1.8 s.
    assert time.perf_counter() - started < 1.2


def test_conditionals_decide_which_children_run(home: Path) -> None:
    @env.task
    async def even(x: int) -> str:
        return f"even {x}"

    @env.task
    async def odd(x: int) -> str:
        return f"odd {x}"

    @env.task
    async def main(n: int) -> list[str]:
        out = []
        for i in range(n):
            out.append(await (even(i) if i % 2 == 0 else odd(i)))
        return out

    run = heddle.run(main, 5)
    assert run.outputs() == ["even 0", "odd 1", "even 2", "odd 3", "even 4"]
    names = [a.task_name for a in run.actions() if a.parent_id is not None]
    assert names.count("tasks.even") == 3
    assert names.count("tasks.odd") == 2


def test_parent_catches_child_error_as_its_original_type_and_message(home: Path) -> None:
    @env.task
    async def spend(amount: int) -> int:
        if amount > 10:
            raise QuotaExceeded(f"{amount} is over the quota of 10")
        return amount

    @env.task
    async def main(amount: int) -> str:
        try:
            await spend(amount)
        except QuotaExceeded as exc:
            return f"caught {type(exc).__name__}: {exc}"
        return "no error"

    run = heddle.run(main, 42)
    assert run.outputs() == "caught QuotaExceeded: 42 is over the quota of 10"
    child = next(a for a in run.actions() if a.task_name == "tasks.spend")
    assert child.status == "failed"
    error = json.loads(child.error or "{}")
    assert error["type"].endswith("QuotaExceeded")
    assert error["message"] == "42 is over the quota of 10"


def test_unpicklable_child_error_reaches_a_later_reader_as_task_error(home: Path) -> None:
    @env.task
    async def locked(x: int) -> int:
        raise LockedError(f"cannot hand over {x}")

    @env.task
    async def main(x: int) -> int:
        return await locked(x)

    run = heddle.run(main, 7)
    with pytest.raises(LockedError):
        run.outputs()
    # Another reader (a CLI, the server, a later process) only has the stored failure.
    with pytest.raises(heddle.TaskError) as info:
        heddle.get_run(run.id).outputs()
    error = info.value
    assert error.type_name.endswith("LockedError")
    assert error.message == "cannot hand over 7"
    assert "raise LockedError" in error.traceback
    assert error.run_id == run.id


def test_error_that_cannot_be_rebuilt_becomes_task_error(home: Path) -> None:
    @env.task
    async def main(x: int) -> int:
        raise TwoArgError(x, "bad")

    run = heddle.run(main, 3)
    with pytest.raises(heddle.TaskError) as info:
        heddle.get_run(run.id).outputs()
    assert info.value.type_name.endswith("TwoArgError")
    assert "code 3: bad" in str(info.value)
    assert "raise TwoArgError" in info.value.traceback


def test_outputs_of_a_failed_run_raise_the_task_error(home: Path) -> None:
    @env.task
    async def main(x: int) -> int:
        raise QuotaExceeded(f"no {x}")

    run = heddle.run(main, 5)
    assert run.status == "failed"
    with pytest.raises(QuotaExceeded, match="no 5"):
        run.outputs()
    # The same error comes back from the store, rebuilt as its own type.
    with pytest.raises(QuotaExceeded, match="no 5"):
        heddle.get_run(run.id).outputs()


# -- sync tasks ------------------------------------------------------------------------


def test_sync_task_calls_sync_task_in_worker_threads(home: Path) -> None:
    threads: list[str] = []

    @env.task
    def square(x: int) -> int:
        threads.append(threading.current_thread().name)
        return x * x

    @env.task
    def main(x: int) -> int:
        threads.append(threading.current_thread().name)
        return square(x) + square(x + 1)

    assert heddle.run(main, 3).outputs() == 9 + 16
    assert len(threads) == 3
    assert threading.main_thread().name not in threads
    assert all(name.startswith("heddle-task") for name in threads)


def test_sync_task_fans_out_with_list_of_map(home: Path) -> None:
    @env.task
    def square(x: int) -> int:
        return x * x

    @env.task
    def main(n: int) -> list[int]:
        return list(heddle.map(square, range(n)))

    run = heddle.run(main, 6)
    assert run.outputs() == [0, 1, 4, 9, 16, 25]
    assert sum(a.task_name == "tasks.square" for a in run.actions()) == 6


def test_sync_task_called_from_async_code_says_to_use_aio(home: Path) -> None:
    @env.task
    def square(x: int) -> int:
        return x * x

    @env.task
    async def main(x: int) -> int:
        return square(x)

    with pytest.raises(heddle.HeddleError, match=r"await square\.aio\(") as info:
        heddle.run(main, 2).outputs()
    assert "sync task" in str(info.value)


def test_async_task_awaits_sync_task_with_aio(home: Path) -> None:
    @env.task
    def square(x: int) -> int:
        return x * x

    @env.task
    async def main(x: int) -> int:
        return await square.aio(x) + 1

    assert heddle.run(main, 4).outputs() == 17


# -- tasks outside a run -----------------------------------------------------------------


def test_tasks_called_outside_a_run_just_run_the_function(home: Path) -> None:
    @env.task
    def add(a: int, b: int) -> int:
        return a + b

    @env.task
    async def mul(a: int, b: int) -> int:
        return a * b

    assert add(2, 3) == 5
    assert asyncio.run(mul(2, 3)) == 6
    assert asyncio.run(add.aio(4, 5)) == 9
    assert store().list_runs() == []


def test_run_refuses_things_that_are_not_tasks(home: Path) -> None:
    def plain(x: int) -> int:
        return x

    with pytest.raises(heddle.HeddleError, match="needs a task"):
        heddle.run(plain, 1)  # type: ignore[arg-type]


def test_run_cannot_be_started_inside_a_task(home: Path) -> None:
    @env.task
    async def inner(x: int) -> int:
        return x

    @env.task
    async def main(x: int) -> int:
        return heddle.run(inner, x).outputs()  # type: ignore[no-any-return]

    with pytest.raises(heddle.HeddleError, match="cannot start a run inside a task"):
        heddle.run(main, 1).outputs()


# -- the run handle --------------------------------------------------------------------


def test_run_handle_has_id_status_name_and_outputs(home: Path) -> None:
    @env.task
    async def main(x: int) -> int:
        return x + 1

    run = heddle.run(main, 1, name="nightly")
    assert run.id.startswith("r") and len(run.id) == 17
    assert run.status == "succeeded"
    assert run.name == "nightly"
    assert run.outputs() == 2
    again = heddle.get_run(run.id)
    assert (again.id, again.status, again.name, again.outputs()) == (
        run.id,
        "succeeded",
        "nightly",
        2,
    )
    assert heddle.get_run(run.id[:8]).id == run.id


def test_run_without_waiting_goes_on_in_the_background(home: Path) -> None:
    gate = threading.Event()

    @env.task
    def main(x: int) -> int:
        assert gate.wait(5)
        return x * 10

    run = heddle.run(main, 4, wait=False)
    assert not run.done
    assert run.status == "running"
    gate.set()
    assert run.wait(timeout=10) is run
    assert run.done
    assert run.status == "succeeded"
    assert run.outputs() == 40


# -- values between tasks --------------------------------------------------------------


def test_values_cross_task_boundaries_with_their_types(home: Path) -> None:
    @env.task
    async def echo_sample(s: Sample) -> Sample:
        return dataclasses.replace(s, tags=s.tags | {"seen"}, maybe=None)

    @env.task
    async def echo_model(m: Model) -> Model:
        return Model(name=m.name.upper(), scores=[*m.scores, 1.0])

    @env.task
    async def main(s: Sample, m: Model) -> tuple[Sample, Model]:
        s2 = await echo_sample(s)
        m2 = await echo_model(m)
        assert type(s2) is Sample and type(m2) is Model
        return s2, m2

    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    sample = Sample(when=when, tags={"a", "b"}, pair=(1, "x"), maybe=3, color=Color.BLUE)
    s2, m2 = heddle.run(main, sample, Model(name="m", scores=[0.5])).outputs()
    assert s2 == Sample(
        when=when, tags={"a", "b", "seen"}, pair=(1, "x"), maybe=None, color=Color.BLUE
    )
    assert type(s2.when) is dt.datetime and s2.when.tzinfo == dt.UTC
    assert type(s2.tags) is set and type(s2.pair) is tuple and s2.color is Color.BLUE
    assert m2 == Model(name="M", scores=[0.5, 1.0])


def test_child_gets_a_copy_not_the_callers_object(home: Path) -> None:
    @env.task
    async def mutate(xs: list[int]) -> list[int]:
        xs.append(99)
        return xs

    @env.task
    async def main(n: int) -> list[list[int]]:
        mine = list(range(n))
        theirs = await mutate(mine)
        return [mine, theirs]

    assert heddle.run(main, 2).outputs() == [[0, 1], [0, 1, 99]]


# -- the recorded action tree ----------------------------------------------------------


def test_actions_record_parent_child_structure_and_call_order(home: Path) -> None:
    @env.task
    async def leaf(x: int) -> int:
        return x

    @env.task
    async def branch(x: int) -> int:
        return await leaf(x) + await leaf(x + 1)

    @env.task
    async def main(x: int) -> int:
        a = await branch(x)
        b = await leaf(100)
        return a + b

    run = heddle.run(main, 1)
    assert run.outputs() == 1 + 2 + 100
    actions = run.actions()
    by_id = {a.id: a for a in actions}
    root = next(a for a in actions if a.parent_id is None)
    assert root.id == run.record.root_action_id
    assert root.task_name == "tasks.main"
    children = sorted((a for a in actions if a.parent_id == root.id), key=lambda a: a.seq)
    assert [(c.task_name, c.seq) for c in children] == [("tasks.branch", 1), ("tasks.leaf", 2)]
    grandchildren = sorted(
        (a for a in actions if a.parent_id == children[0].id), key=lambda a: a.seq
    )
    assert [(g.task_name, g.seq) for g in grandchildren] == [("tasks.leaf", 1), ("tasks.leaf", 2)]
    assert all(a.parent_id is None or a.parent_id in by_id for a in actions)
    assert len(actions) == 5


def test_same_call_twice_makes_two_distinct_actions(home: Path) -> None:
    calls: list[int] = []

    @env.task
    async def tick(x: int) -> int:
        calls.append(x)
        return len(calls)

    @env.task
    async def main(x: int) -> list[int]:
        return [await tick(x), await tick(x)]

    run = heddle.run(main, 1)
    assert run.outputs() == [1, 2]
    ticks = [a for a in run.actions() if a.task_name == "tasks.tick"]
    assert len({a.id for a in ticks}) == 2


def test_run_names_longer_than_the_store_allows_are_refused_on_every_backend(
    any_home: str,
) -> None:
    @env.task
    async def main(x: int) -> int:
        return x

    with pytest.raises(heddle.ConfigError, match="1 to 200 characters"):
        heddle.run(main, 1, name="nightly-" + "n" * 250)
    assert heddle._sdk.run.list_runs() == []
    longest = "n" * 200
    assert heddle.get_run(heddle.run(main, 1, name=longest).id).name == longest


def test_run_url_points_at_the_run_page_of_heddle_serve(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @env.task
    async def main(x: int) -> int:
        return x

    run = heddle.run(main, 1)
    assert run.url == f"http://127.0.0.1:8080/runs/{run.id}"
    monkeypatch.setenv("HEDDLE_UI_URL", "https://heddle.example.test/")
    assert run.url == f"https://heddle.example.test/runs/{run.id}"


def test_inline_actions_keep_what_they_printed_in_their_own_logs(home: Path) -> None:
    import sys

    from heddle._sdk.config import get_session

    @env.task
    def quiet(x: int) -> int:
        return x

    @env.task
    def noisy(x: int) -> int:
        print(f"noisy child {x}", file=sys.stderr)
        return x

    @env.task
    async def main(x: int) -> int:
        print("root speaks")
        return await noisy.aio(x) + await quiet.aio(x)

    run = heddle.run(main, 3)
    assert run.outputs() == 6
    blobs = get_session().blobs
    logs = {a.task_name: blobs.get_text(f"logs/{run.id}/{a.id}/1.log") for a in run.actions()}
    assert logs["tasks.main"] == b"root speaks\n"
    assert logs["tasks.noisy"] == b"noisy child 3\n"
    assert logs["tasks.quiet"] is None  # nothing printed, nothing stored
