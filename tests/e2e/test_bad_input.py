"""Bad inputs, bad outputs and bad configuration: refused early, with messages that
say what to fix, and without recording or damaging anything."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import heddle
from heddle._sdk.config import get_session

env = heddle.TaskEnvironment(name="bad")


@env.task
async def scale(n: int, factors: list[int], label: str = "x") -> int:
    return n * sum(factors)


def runs_in_store() -> list[Any]:
    return get_session().store.list_runs()  # type: ignore[no-any-return]


def refused(*args: Any, **kwargs: Any) -> heddle.InputError:
    with pytest.raises(heddle.InputError) as info:
        heddle.run(scale, *args, **kwargs)
    assert runs_in_store() == [], "a refused run must not be recorded"
    return info.value


# -- inputs checked by heddle.run ------------------------------------------------------


def test_wrong_type_names_task_parameter_expected_and_given(home: Path) -> None:
    error = refused("three", [1])
    assert isinstance(error, TypeError)
    assert (error.task, error.parameter) == ("bad.scale", "n")
    message = str(error)
    assert "'bad.scale'" in message and "'n'" in message
    assert "expected int" in message and "str 'three'" in message


def test_bool_is_not_accepted_for_int(home: Path) -> None:
    error = refused(True, [1])
    assert error.parameter == "n"
    assert "bool" in str(error)


def test_wrong_element_inside_a_list_names_its_position(home: Path) -> None:
    error = refused(2, [1, 2, "3"])
    assert error.parameter == "factors"
    assert "[2]" in str(error)
    assert "expected int" in str(error)


def test_missing_parameter_is_named(home: Path) -> None:
    error = refused(2)
    assert "factors" in str(error)
    assert error.task == "bad.scale"


def test_unknown_parameter_is_named(home: Path) -> None:
    error = refused(2, [1], colour="red")
    assert "colour" in str(error)


def test_too_many_positional_arguments_are_refused(home: Path) -> None:
    error = refused(1, [1], "label", "extra")
    assert "too many" in str(error)


def test_good_inputs_after_bad_ones_run_normally(home: Path) -> None:
    refused("x", [1])
    assert heddle.run(scale, 3, [1, 2], label="ok").outputs() == 9
    assert len(runs_in_store()) == 1


# -- inputs checked on a child call ----------------------------------------------------


def test_child_call_with_bad_input_raises_in_the_parent_and_records_no_child(
    home: Path,
) -> None:
    @env.task
    async def main(x: int) -> str:
        try:
            await scale(x, ["not", "ints"])  # type: ignore[list-item]
        except heddle.InputError as exc:
            return f"{exc.task} {exc.parameter}"
        return "accepted"

    run = heddle.run(main, 1)
    assert run.outputs() == "bad.scale factors"
    assert [a.task_name for a in run.actions()] == ["bad.main"]


def test_uncaught_child_input_error_fails_the_run(home: Path) -> None:
    @env.task
    async def main(x: int) -> int:
        return await scale(x, [1], label=3)  # type: ignore[arg-type]

    run = heddle.run(main, 1)
    with pytest.raises(heddle.InputError, match="label"):
        run.outputs()
    assert run.status == "failed"
    assert [a.task_name for a in run.actions()] == ["bad.main"]


def test_map_with_one_bad_item_submits_no_child(home: Path) -> None:
    @env.task
    async def one(x: int) -> int:
        return x

    @env.task
    async def main(n: int) -> str:
        try:
            await heddle.map(one, [1, 2, "three", 4])
        except heddle.InputError as exc:
            return str(exc.parameter)
        return "accepted"

    run = heddle.run(main, 0)
    assert run.outputs() == "x"
    assert [a.task_name for a in run.actions()] == ["bad.main"]


# -- outputs ---------------------------------------------------------------------------


def test_task_returning_the_wrong_type_fails_with_a_clear_message(home: Path) -> None:
    @env.task
    async def count(x: int) -> int:
        return "many"  # type: ignore[return-value]

    run = heddle.run(count, 1)
    with pytest.raises(heddle.TypeMismatchError) as info:
        run.outputs()
    message = str(info.value)
    assert "bad.count" in message
    assert "expected int" in message and "str 'many'" in message
    (action,) = run.actions()
    assert action.status == "failed"
    assert run.status == "failed"


def test_wrong_element_in_a_returned_list_names_its_position(home: Path) -> None:
    @env.task
    async def numbers(x: int) -> list[int]:
        return [1, 2, None]  # type: ignore[list-item]

    with pytest.raises(heddle.TypeMismatchError, match=r"\[2\]"):
        heddle.run(numbers, 1).outputs()


# -- runs that do not exist ------------------------------------------------------------


def test_unknown_run_id_raises_run_not_found(home: Path) -> None:
    with pytest.raises(heddle.RunNotFoundError) as info:
        heddle.get_run("nope")
    assert isinstance(info.value, LookupError)
    assert info.value.run_id == "nope"
    with pytest.raises(heddle.RunNotFoundError):
        heddle.get_run("r")


def test_abort_and_recover_of_unknown_run_raise_run_not_found(home: Path) -> None:
    with pytest.raises(heddle.RunNotFoundError):
        heddle.recover("rmissing")
    with pytest.raises(heddle.RunNotFoundError):
        heddle.abort("rmissing")


# -- the store on disk -----------------------------------------------------------------


def test_garbage_store_file_raises_store_error_and_is_left_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "heddle.db"
    garbage = b"this is certainly not a database\x00\xff" * 200
    db.write_bytes(garbage)
    with pytest.raises(heddle.StoreError) as info:
        heddle.init(home)
    assert str(db) in str(info.value)
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in home.iterdir()) == ["heddle.db"]


def test_garbage_store_found_through_heddle_home_is_refused_on_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    garbage = os.urandom(8192)
    (home / "heddle.db").write_bytes(garbage)
    monkeypatch.setenv("HEDDLE_HOME", str(home))
    with pytest.raises(heddle.StoreError, match=r"heddle\.db"):
        heddle.run(scale, 1, [1])
    assert (home / "heddle.db").read_bytes() == garbage


def test_directory_in_place_of_the_store_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "home" / "heddle.db").mkdir(parents=True)
    with pytest.raises(heddle.StoreError, match="directory"):
        heddle.init(tmp_path / "home")


def test_home_that_is_a_file_raises_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(heddle.ConfigError, match="not a directory"):
        heddle.init(tmp_path / "file")


# -- configuration ---------------------------------------------------------------------


def test_unsupported_database_url_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_DB_URL", "mysql://x")
    with pytest.raises(heddle.ConfigError, match="mysql"):
        heddle.run(scale, 1, [1])


def test_unparseable_database_url_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(heddle.ConfigError, match="not a database URL"):
        heddle.init(tmp_path, db_url="::::")


def test_unknown_executor_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", "quantum")
    with pytest.raises(heddle.ConfigError, match="quantum"):
        heddle.run(scale, 1, [1])


@pytest.mark.parametrize(
    "kwargs",
    [{"memory": "lots"}, {"memory": -1}, {"cpu": "fast"}, {"cpu": 0}, {"gpu": -1}],
)
def test_bad_resources_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(heddle.ConfigError):
        heddle.Resources(**kwargs)


@pytest.mark.parametrize("name", ["", "   ", None, 42])
def test_bad_environment_name_raises_config_error(name: Any) -> None:
    with pytest.raises(heddle.ConfigError, match="name"):
        heddle.TaskEnvironment(name=name)


def test_bad_environment_settings_raise_config_error() -> None:
    with pytest.raises(heddle.ConfigError, match="env_vars"):
        heddle.TaskEnvironment(name="e", env_vars={"N": 1})  # type: ignore[dict-item]
    with pytest.raises(heddle.ConfigError, match="resources"):
        heddle.TaskEnvironment(name="e", resources={"cpu": 1})  # type: ignore[arg-type]


def test_variadic_task_parameters_raise_config_error() -> None:
    with pytest.raises(heddle.ConfigError, match=r"\*args"):

        @env.task
        def total(*xs: int) -> int:
            return sum(xs)

    with pytest.raises(heddle.ConfigError, match="'options'"):

        @env.task
        def configure(**options: str) -> int:
            return len(options)


def test_unresolvable_type_hint_raises_config_error() -> None:
    with pytest.raises(heddle.ConfigError, match="type hints"):

        @env.task
        def f(x: NoSuchType) -> int:  # type: ignore[name-defined]  # noqa: F821
            return 1


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": True},
        {"timeout": 0},
        {"timeout": -2.0},
        {"cache": "sometimes"},
        {"timeout": heddle.Timeout},
    ],
)
def test_bad_task_options_raise_config_error(options: dict[str, Any]) -> None:
    with pytest.raises(heddle.ConfigError):

        @env.task(**options)
        async def f(x: int) -> int:
            return x


def test_awaiting_a_task_without_calling_it_says_how(home: Path) -> None:
    @env.task
    async def main(x: int) -> int:
        return await scale  # type: ignore[no-any-return, misc]

    with pytest.raises(heddle.HeddleError, match=r"await scale\(\.\.\.\)"):
        heddle.run(main, 1).outputs()
