"""A cached value is never served when the code that made it would now compute something else.

Each test writes a program to a folder, runs it with the ``heddle`` command (or as a
script) in a fresh process, edits the file the way a user would, and runs it again: the
cached parent must not return the old value. Unchanged code still hits, and the hit says
where its value came from. Under the inline and the process executor (where a body runs
in a worker: its children's and traces' versions cross processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from heddle.cli import cli

_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]

PROGRAM = '''\
"""Cached tasks that call tasks, traces, helpers and constants."""

import os
import signal
from pathlib import Path

import heddle

env = heddle.TaskEnvironment(name="cc", cache="auto")

SCALE = 2
STEP = 5


def double(x: int) -> int:
    return x * SCALE


class Shift:
    def apply(self, x: int) -> int:
        return x + 7


@heddle.trace
def annotate(x: int) -> int:
    return x + 40


@env.task
async def leaf(x: int) -> int:
    return x + 100


@env.task
async def middle(x: int) -> int:
    return await leaf(x) + 1000


@env.task
async def top(x: int) -> int:
    return await middle(x)


@env.task
async def traced(x: int) -> int:
    return annotate(x) + 1


@env.task
async def stepped(x: int, step: int = STEP) -> int:
    return x + step


@env.task
async def defaulted(x: int) -> int:
    return await stepped(x)


@env.task
async def helped(x: int) -> int:
    return double(x) + Shift().apply(x)


@env.task
async def crash_once(x: int) -> int:
    # The first time, the whole process dies (kill -9) after middle succeeded.
    marker = Path(__file__).with_name("crashed")
    if not marker.exists():
        marker.write_text("once")
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@env.task
async def recovered(x: int) -> int:
    return await middle(x) + await crash_once(x)


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(heddle.run(globals()[sys.argv[1]], int(sys.argv[2])).outputs()))
'''


@pytest.fixture(params=["inline", "process"])
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# Where the process executor changes nothing about the check (keys, fingerprints and the
# dependency check all run in the driver), the inline executor alone keeps the suite fast.
INLINE_ONLY = pytest.mark.parametrize("executor", ["inline"])


class Program:
    """The program file, its Heddle home, and the ``heddle`` command run against both."""

    def __init__(self, folder: Path, executor: str) -> None:
        self.file = folder / "flows.py"
        self.file.write_text(PROGRAM)
        self.home = folder / "home"
        self.executor = executor

    def edit(self, old: str, new: str) -> None:
        text = self.file.read_text()
        assert text.count(old) == 1, old
        self.file.write_text(text.replace(old, new))

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
        env["HEDDLE_EXECUTOR"] = self.executor
        env["HEDDLE_HOME"] = str(self.home)
        # An edit within the same second that keeps the file's size would otherwise be
        # read from a stale .pyc (Python checks mtime in seconds and size).
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def heddle(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HEDDLE, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=self._env(),
            cwd=self.file.parent,
        )

    def run(self, task: str, x: int = 1) -> Any:
        proc = self.heddle("run", str(self.file), task, "--x", str(x), "--json", "--quiet")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def run_script(self, task: str, x: int = 1) -> Any:
        """``python flows.py``: the tasks live in __main__ and reach workers by value."""
        proc = subprocess.run(
            [sys.executable, str(self.file), task, str(x)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self._env(),
            cwd=self.file.parent,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def cli(self, *args: str) -> Result:
        """The ``heddle`` command in this process (reading needs no fresh interpreter)."""
        return CliRunner().invoke(cli, ["--home", str(self.home), *args])

    def last_run(self) -> dict[str, Any]:
        listing = self.cli("runs", "list", "--json", "--limit", "1")
        assert listing.exit_code == 0, listing.output
        (latest,) = json.loads(listing.stdout)
        shown = self.cli("runs", "show", latest["id"], "--json")
        assert shown.exit_code == 0, shown.output
        doc: dict[str, Any] = json.loads(shown.stdout)
        return doc

    def root(self, run: dict[str, Any]) -> dict[str, Any]:
        (root,) = (a for a in run["actions"] if a["id"] == run["root_action_id"])
        return root


@pytest.fixture
def program(tmp_path: Path, executor: str) -> Program:
    return Program(tmp_path, executor)


def test_unchanged_code_hits_and_the_hit_names_the_action_that_computed_it(
    program: Program,
) -> None:
    assert program.run("top") == 1101
    first = program.last_run()
    assert program.run("top") == 1101
    second = program.last_run()
    root = program.root(second)
    assert root["cached"] is True
    assert len(second["actions"]) == 1
    assert root["source_run_id"] == first["id"]
    assert root["source_action_id"] == first["root_action_id"]
    shown = program.cli("runs", "show", second["id"])
    assert f"cache hit from run {first['id']} action {first['root_action_id']}" in shown.stdout


@pytest.mark.parametrize("task", ["traced", "helped", "defaulted"])
def test_unchanged_tasks_that_use_traces_helpers_and_defaults_still_hit(
    program: Program, task: str
) -> None:
    # Versions computed where the body ran (a worker) match the ones the driver checks.
    first = program.run(task)
    assert program.run(task) == first
    assert program.root(program.last_run())["cached"] is True


def test_a_script_run_twice_hits_and_an_edited_helper_misses(program: Program) -> None:
    assert program.run_script("helped") == 10
    assert program.run_script("traced") == 42
    assert program.run_script("helped") == 10
    assert program.root(program.last_run())["cached"] is True
    assert program.run_script("traced") == 42
    assert program.root(program.last_run())["cached"] is True
    program.edit("return x * SCALE", "return x * SCALE * 10")
    program.edit("return x + 40", "return x + 50")
    assert program.run_script("helped") == 28
    assert program.run_script("traced") == 52


@INLINE_ONLY
def test_a_hit_of_a_hit_names_the_action_that_really_computed_the_value(
    program: Program,
) -> None:
    program.run("top")
    first = program.last_run()
    program.run("top")
    program.run("top")
    third = program.root(program.last_run())
    assert (third["source_run_id"], third["source_action_id"]) == (
        first["id"],
        first["root_action_id"],
    )


@INLINE_ONLY
def test_editing_a_callee_recomputes_the_cached_parent(program: Program) -> None:
    assert program.run("top") == 1101
    program.edit("await leaf(x) + 1000", "await leaf(x) + 2000")
    assert program.run("top") == 2101
    run = program.last_run()
    by_task = {a["task_name"]: a for a in run["actions"]}
    assert by_task["cc.top"]["cached"] is False
    assert by_task["cc.middle"]["cached"] is False
    # The leaf did not change: its own entry is still good.
    assert by_task["cc.leaf"]["cached"] is True


def test_editing_a_callees_callee_recomputes_the_cached_parent(program: Program) -> None:
    assert program.run("top") == 1101
    program.edit("return x + 100", "return x + 300")
    assert program.run("top") == 1301
    assert program.run("top") == 1301
    assert program.root(program.last_run())["cached"] is True


def test_editing_a_trace_the_parent_uses_recomputes_the_cached_parent(program: Program) -> None:
    assert program.run("traced") == 42
    program.edit("return x + 40", "return x + 50")
    assert program.run("traced") == 52


@INLINE_ONLY
def test_editing_an_input_default_of_a_callee_recomputes_the_cached_parent(
    program: Program,
) -> None:
    assert program.run("defaulted") == 6
    program.edit("step: int = STEP", "step: int = STEP + 4")
    assert program.run("defaulted") == 10


@INLINE_ONLY
def test_editing_the_constant_an_input_default_names_recomputes_the_cached_parent(
    program: Program,
) -> None:
    # The callee's source is the same: its default's value is what changed.
    assert program.run("defaulted") == 6
    program.edit("STEP = 5", "STEP = 9")
    assert program.run("defaulted") == 10


@INLINE_ONLY
def test_editing_a_plain_helper_function_recomputes_the_cached_task(program: Program) -> None:
    assert program.run("helped") == 10
    program.edit("return x * SCALE", "return x * SCALE * 10")
    assert program.run("helped") == 28


@INLINE_ONLY
def test_editing_a_module_constant_a_helper_reads_recomputes_the_cached_task(
    program: Program,
) -> None:
    assert program.run("helped") == 10
    program.edit("SCALE = 2", "SCALE = 3")
    assert program.run("helped") == 11


@INLINE_ONLY
def test_editing_a_method_of_a_class_the_task_uses_recomputes_the_cached_task(
    program: Program,
) -> None:
    assert program.run("helped") == 10
    program.edit("return x + 7", "return x + 70")
    assert program.run("helped") == 73


@INLINE_ONLY
def test_editing_an_unrelated_task_keeps_the_hit(program: Program) -> None:
    assert program.run("top") == 1101
    program.edit("return x + step", "return x + step + 1")
    program.edit("return x + 40", "return x + 41")
    assert program.run("top") == 1101
    assert program.root(program.last_run())["cached"] is True


@INLINE_ONLY
def test_a_parent_finished_by_recover_records_what_its_replayed_children_called(
    program: Program,
) -> None:
    # Inline: the driver is the process the task kills.
    crashed = program.heddle("run", str(program.file), "recovered", "--x", "1", "--quiet")
    assert crashed.returncode != 0
    run_id = program.last_run()["id"]
    recovered = program.heddle("recover", run_id, "--json", "--quiet")
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout) == 1102
    # middle was replayed, not run again: the entry still knows it called leaf.
    assert program.run("recovered") == 1102
    assert program.root(program.last_run())["cached"] is True
    program.edit("return x + 100", "return x + 300")
    assert program.run("recovered") == 1302
