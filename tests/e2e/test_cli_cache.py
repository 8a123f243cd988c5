"""``heddle cache list`` and ``heddle cache clear``: what is cached, and removing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from heddle.cli import cli

PROGRAM = """\
import heddle

env = heddle.TaskEnvironment(name="cl", cache="auto")


@env.task
async def leaf(x: int) -> int:
    return x + 1


@env.task
async def top(x: int) -> int:
    return await leaf(x)
"""


@pytest.fixture(autouse=True)
def _inline_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", "inline")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "cached_flows.py"
    path.write_text(PROGRAM)
    return path


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def run(home: Path, program: Path, x: int) -> None:
    result = invoke(home, "run", str(program), "top", "--x", str(x), "--quiet", "--json")
    assert result.exit_code == 0, result.output


def test_cache_list_shows_each_cached_task_and_its_entry_count(home: Path, program: Path) -> None:
    run(home, program, 1)
    run(home, program, 2)
    run(home, program, 2)  # hits: no new entries
    listing = invoke(home, "cache", "list", "--json")
    assert listing.exit_code == 0, listing.output
    assert [(t["task"], t["entries"]) for t in json.loads(listing.stdout)] == [
        ("cl.leaf", 2),
        ("cl.top", 2),
    ]
    table = invoke(home, "cache", "list")
    assert "cl.leaf" in table.stdout and "cl.top" in table.stdout


def test_cache_list_of_a_task_shows_its_entries_with_source_and_dependencies(
    home: Path, program: Path
) -> None:
    run(home, program, 1)
    runs = json.loads(invoke(home, "runs", "list", "--json").stdout)
    (entry,) = json.loads(invoke(home, "cache", "list", "cl.top", "--json").stdout)
    assert entry["run_id"] == runs[0]["id"]
    assert entry["action_id"] == runs[0]["root_action_id"]
    assert [(kind, name) for kind, name, _version in entry["depends_on"]] == [("task", "cl.leaf")]
    table = invoke(home, "cache", "list", "cl.top")
    assert "task cl.leaf" in table.stdout


def test_cache_clear_of_a_task_removes_only_its_entries_and_says_how_many(
    home: Path, program: Path
) -> None:
    run(home, program, 1)
    run(home, program, 2)
    cleared = invoke(home, "cache", "clear", "cl.top")
    assert cleared.exit_code == 0, cleared.output
    assert "removed 2 cache entries of task cl.top" in cleared.stdout
    left = json.loads(invoke(home, "cache", "list", "--json").stdout)
    assert [t["task"] for t in left] == ["cl.leaf"]
    # The next run computes the parent again, and reuses the leaf.
    run(home, program, 1)
    (latest, *_rest) = json.loads(invoke(home, "runs", "list", "--json").stdout)
    shown = json.loads(invoke(home, "runs", "show", latest["id"], "--json").stdout)
    assert {a["task_name"]: a["cached"] for a in shown["actions"]} == {
        "cl.top": False,
        "cl.leaf": True,
    }


def test_cache_clear_without_a_task_removes_everything(home: Path, program: Path) -> None:
    run(home, program, 1)
    cleared = invoke(home, "cache", "clear")
    assert cleared.exit_code == 0, cleared.output
    assert "removed 2 cache entries" in cleared.stdout
    assert "the cache is empty" in invoke(home, "cache", "list").stdout


@pytest.mark.parametrize("command", ["clear", "list"])
def test_a_task_name_with_no_entries_is_an_error_that_suggests_the_right_one(
    home: Path, program: Path, command: str
) -> None:
    run(home, program, 1)
    for name, hint in (("top", "did you mean 'cl.top'"), ("cl.tpo", "did you mean 'cl.top'")):
        result = invoke(home, "cache", command, name)
        assert result.exit_code == 2, result.output
        assert f"no cache entries for task {name!r}" in result.stderr
        assert hint in result.stderr
        assert "cl.leaf, cl.top" in result.stderr
    # Nothing was removed.
    assert len(json.loads(invoke(home, "cache", "list", "--json").stdout)) == 2


def test_clearing_a_task_in_an_empty_cache_says_the_cache_is_empty(home: Path) -> None:
    result = invoke(home, "cache", "clear", "cl.top")
    assert result.exit_code == 2
    assert "the cache is empty" in result.stderr
