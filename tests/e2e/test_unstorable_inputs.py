"""Values that fit their type hint but cannot be stored: too deep, containing themselves,
ints past Python's conversion limit, text with lone surrogates, pydantic models built
without validation. Each is an InputError naming the parameter (a TypeMismatchError for
an output), raised before anything is recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pydantic
import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="store")


class Person(pydantic.BaseModel):
    name: str
    age: int = 0


@dataclasses.dataclass
class Note:
    title: str
    tags: list[str]


@env.task
async def take_list(x: list[Any]) -> int:
    return len(x)


@env.task
async def take_dict(x: dict[str, Any]) -> int:
    return len(x)


@env.task
async def take_any(x: Any) -> int:
    return 1


@env.task
async def take_int(x: int) -> int:
    return x


@env.task
async def take_str(x: str) -> int:
    return len(x)


@env.task
async def take_int_keys(x: dict[int, str]) -> int:
    return len(x)


@env.task
async def take_set(x: set[str]) -> int:
    return len(x)


@env.task
async def take_note(x: Note) -> int:
    return len(x.tags)


@env.task
async def take_person(x: Person) -> str:
    return x.name


def nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


def refused(task: Any, value: Any) -> heddle.InputError:
    with pytest.raises(heddle.InputError) as info:
        heddle.run(task, value)
    assert get_session().store.list_runs() == [], "a refused run must not be recorded"
    assert info.value.parameter == "x"
    return info.value


@pytest.mark.parametrize("task", [take_list, take_any])
def test_a_list_nested_thousands_deep_is_refused_naming_the_parameter(
    home: Path, task: Any
) -> None:
    error = refused(task, nested(5000))
    assert "nested" in str(error) and "deep" in str(error)


def test_a_list_that_contains_itself_is_refused_with_where(home: Path) -> None:
    loop: list[Any] = [1, []]
    loop[1].append(loop)
    error = refused(take_list, loop)
    assert "contains itself" in str(error)
    assert "[1][0]" in str(error)


def test_a_dict_that_contains_itself_is_refused(home: Path) -> None:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    error = refused(take_dict, loop)
    assert "contains itself" in str(error)
    assert "['me']" in str(error)


@pytest.mark.parametrize("task", [take_int, take_any])
def test_an_int_past_python_s_digit_limit_is_refused(home: Path, task: Any) -> None:
    error = refused(task, 10**5000)
    assert "4300 digits" in str(error)


def test_an_int_key_past_the_digit_limit_is_refused(home: Path) -> None:
    error = refused(take_int_keys, {1: "a", -(10**4300): "b"})
    assert "4300 digits" in str(error)


def test_the_largest_int_under_the_limit_round_trips(home: Path) -> None:
    big = 10**4300 - 1
    assert heddle.run(take_any, big).outputs() == 1
    assert heddle.run(take_int, big).outputs() == big


@pytest.mark.parametrize(
    ("task", "value", "where"),
    [
        (take_str, "a\ud800b", ""),
        (take_any, ["ok", "\udcff"], "[1]"),
        (take_dict, {"ok": 1, "\udc80": 2}, "['\\udc80']"),
        (take_set, {"ok", "x\ud800"}, ""),
        (take_note, Note("t", ["a", "\ud83d"]), ".tags[1]"),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_with_where(
    home: Path, task: Any, value: Any, where: str
) -> None:
    error = refused(task, value)
    assert "surrogate" in str(error)
    assert where in str(error)


def test_a_pydantic_model_built_without_validation_is_refused(home: Path) -> None:
    bad = Person.model_construct(name=5)  # type: ignore[arg-type]
    error = refused(take_person, bad)
    assert "name" in str(error)
    assert heddle.run(take_person, Person(name="ada")).outputs() == "ada"


@pytest.mark.parametrize("name", ["x\ud800", "a\x00b"])
def test_a_run_name_that_cannot_be_stored_is_refused(home: Path, name: str) -> None:
    with pytest.raises(heddle.ConfigError, match="run name"):
        heddle.run(take_int, 1, name=name)
    assert get_session().store.list_runs() == []


def test_a_child_call_with_unstorable_input_raises_in_the_parent(home: Path) -> None:
    @env.task
    async def parent(n: int) -> str:
        loop: list[Any] = []
        loop.append(loop)
        try:
            await take_list(loop)
        except heddle.InputError as exc:
            return f"{exc.parameter}: {'contains itself' in str(exc)}"
        return "accepted"

    run = heddle.run(parent, 1)
    assert run.outputs() == "x: True"
    assert [a.task_name for a in run.actions()] == ["store.parent"]


def test_an_output_with_a_lone_surrogate_fails_the_task_with_a_type_mismatch(
    home: Path,
) -> None:
    @env.task
    async def shout(n: int) -> list[str]:
        return ["fine", "bad\udcff"]

    run = heddle.run(shout, 1)
    with pytest.raises(heddle.TypeMismatchError) as info:
        run.outputs()
    assert "surrogate" in str(info.value) and "[1]" in str(info.value)
    assert run.status == "failed"


@pytest.mark.parametrize("bad", ["x\ud800", "a\x00b"])
def test_task_and_environment_names_that_cannot_be_stored_are_refused(bad: str) -> None:
    with pytest.raises(heddle.ConfigError, match="TaskEnvironment name"):
        heddle.TaskEnvironment(name=bad)
    with pytest.raises(heddle.ConfigError, match="task name"):

        @env.task(name=bad)
        async def named(x: int) -> int:
            return x


def test_env_vars_no_process_can_hold_are_refused() -> None:
    with pytest.raises(heddle.ConfigError, match="NUL"):
        heddle.TaskEnvironment(name="e", env_vars={"A": "x\x00y"})
    with pytest.raises(heddle.ConfigError, match="not an environment variable name"):
        heddle.TaskEnvironment(name="e", env_vars={"A=B": "x"})
    with pytest.raises(heddle.ConfigError, match="NUL"):

        @env.task(env_vars={"A": "\x00"})
        async def f(x: int) -> int:
            return x


@pytest.mark.parametrize("bad", ["g\udcff", "g\x00"])
def test_a_group_name_that_cannot_be_stored_fails_the_task_not_the_store(
    home: Path, bad: str
) -> None:
    @env.task
    async def grouped(n: int) -> int:
        with heddle.group(bad):
            return await take_int(n)

    run = heddle.run(grouped, 1)
    with pytest.raises(heddle.ConfigError, match="group name"):
        run.outputs()
    assert run.status == "failed"
    assert [a.task_name for a in run.actions()] == ["store.grouped"]
