"""Kill the driver with SIGKILL at different moments, recover with heddle.recover, and check
that the run finishes with the same outputs and that no recorded success runs again.

Each program runs in a subprocess and appends one line per task body execution to a
counter file, so the tests see exactly which bodies ran before and after the crash.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from programs.harness import (
    actions,
    count,
    counter_lines,
    inputs_of,
    kill,
    start,
    succeeded_inputs,
    the_run_id,
    use_counter,
    wait_until,
)

import heddle

N_FANOUT = 2000


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Path:
    # Inline unless a test asks for the process executor.
    monkeypatch.setenv("HEDDLE_EXECUTOR", "inline")
    return use_counter()


def _kill_fanout_midway(home: Path, counter: Path, mode: str, kill_at: int, *db: str) -> str:
    proc = start("fanout.py", home, N_FANOUT, mode, *db)
    run_id = the_run_id(proc)
    wait_until(
        f"{kill_at} children to succeed",
        lambda: count(run_id, "fanout.square") >= kill_at,
        proc,
    )
    kill(proc)
    return run_id


def _assert_fanout_recovered(run_id: str, counter: Path) -> None:
    done_before = {i for i, _ in succeeded_inputs(run_id, "fanout.square")}
    assert 0 < len(done_before) < N_FANOUT, "the kill did not land midway"
    assert heddle.get_run(run_id).status == "running"
    runs_before = counter_lines(counter)

    run = heddle.recover(run_id)

    assert run.status == "succeeded"
    assert run.outputs() == sum(i * i for i in range(N_FANOUT))
    runs = counter_lines(counter)
    rerun = sorted(i for i in done_before if runs[f"square:{i}"] != runs_before[f"square:{i}"])
    assert rerun == [], f"children recorded as succeeded ran again: {rerun[:10]}"
    missing = [i for i in range(N_FANOUT) if runs[f"square:{i}"] < 1]
    assert missing == []
    # One action per child, even though some ran twice.
    assert len(actions(run_id, "fanout.square")) == N_FANOUT
    assert count(run_id, "fanout.square") == N_FANOUT


@pytest.mark.parametrize(
    ("mode", "kill_at", "executor"),
    [
        ("map", 5, "inline"),
        ("map", 700, "inline"),
        ("gather", 700, "inline"),
        pytest.param("map", 700, "process", marks=pytest.mark.slow),
    ],
    ids=["map-early", "map-midway", "gather-midway", "map-midway-process"],
)
def test_recover_skips_children_that_succeeded_before_the_kill(
    home: Path,
    counter: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    kill_at: int,
    executor: str,
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)  # the run records it; recover reuses it
    run_id = _kill_fanout_midway(home, counter, mode, kill_at)
    _assert_fanout_recovered(run_id, counter)


def test_recover_survives_a_second_kill_during_recovery(home: Path, counter: Path) -> None:
    run_id = _kill_fanout_midway(home, counter, "map", 300)
    first = {i for i, _ in succeeded_inputs(run_id, "fanout.square")}
    proc = start("recover.py", home, run_id)
    wait_until(
        "recovery to make progress",
        lambda: count(run_id, "fanout.square") >= len(first) + 300,
        proc,
    )
    kill(proc)
    second = {i for i, _ in succeeded_inputs(run_id, "fanout.square")}
    assert first < second

    _assert_fanout_recovered(run_id, counter)
    runs = counter_lines(counter)
    assert [i for i in first if runs[f"square:{i}"] != 1] == []
    # Children are at-least-once: only those in flight at one of the kills ran twice.
    assert sum(runs.values()) <= N_FANOUT + 2 * 25


@pytest.mark.postgres
def test_recover_skips_succeeded_children_on_postgres(
    tmp_path: Path, counter: Path, pg_url: str
) -> None:
    home = tmp_path / "pg-home"
    heddle.init(home, db_url=pg_url)
    run_id = _kill_fanout_midway(home, counter, "map", 700, pg_url)
    _assert_fanout_recovered(run_id, counter)


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_recover_resumes_a_chain_of_sequential_tasks_after_the_last_success(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("chain.py", home, 20)
    run_id = the_run_id(proc)
    wait_until("5 steps to succeed", lambda: count(run_id, "chain.step") >= 5, proc)
    kill(proc)
    steps_before = {i for i, _ in succeeded_inputs(run_id, "chain.step")}
    checks_before = {i for i, _ in succeeded_inputs(run_id, "chain.check")}
    assert 5 <= len(steps_before) < 20

    run = heddle.recover(run_id)

    assert run.outputs() == sum(range(20))
    runs = counter_lines(counter)
    assert all(runs[f"step:{i}"] == 1 for i in steps_before), runs
    assert all(runs[f"check:{i}"] == 1 for i in checks_before), runs
    # In a chain at most the one step in flight at the kill runs twice.
    assert sum(runs[f"step:{i}"] for i in range(20)) <= 21
    assert all(runs[f"step:{i}"] >= 1 and runs[f"check:{i}"] >= 1 for i in range(20))


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_recover_replays_nested_sync_tasks_called_from_worker_threads(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    # inline: sync bodies run on worker threads; process: in worker processes.
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("nested.py", home, "sync", 8)
    run_id = the_run_id(proc)
    wait_until("9 leaves to succeed", lambda: count(run_id, "nested.leaf") >= 9, proc)
    kill(proc)
    leaves_before = {tuple(x) for x in succeeded_inputs(run_id, "nested.leaf")}
    middles_before = {i for (i,) in succeeded_inputs(run_id, "nested.middle")}
    assert middles_before and len(middles_before) < 8

    run = heddle.recover(run_id)

    assert run.outputs() == sum(i * 10 + j for i in range(8) for j in range(4))
    runs = counter_lines(counter)
    assert [leaf for leaf in leaves_before if runs[f"leaf:{leaf[0]}.{leaf[1]}"] != 1] == []
    assert [i for i in middles_before if runs[f"middle:{i}"] != 1] == []
    # The middle task that was in flight runs again, and only its missing leaves with it.
    assert sum(runs[f"middle:{i}"] for i in range(8)) <= 9
    assert runs["sync_main"] == 2


def test_recover_replays_nested_async_tasks_and_sync_subtrees(home: Path, counter: Path) -> None:
    proc = start("nested.py", home, "async", 8)
    run_id = the_run_id(proc)
    wait_until("2 branches to succeed", lambda: count(run_id, "nested.branch") >= 2, proc)
    kill(proc)
    leaves_before = {tuple(x) for x in succeeded_inputs(run_id, "nested.aleaf")}
    branches_before = {i for (i,) in succeeded_inputs(run_id, "nested.branch")}
    assert 2 <= len(branches_before) < 8

    run = heddle.recover(run_id)

    branches = sum(i * 10 + j for i in range(8) for j in range(4))
    subtrees = sum(i * 10 + j for i in range(100, 108) for j in range(4))
    assert run.outputs() == branches + subtrees
    runs = counter_lines(counter)
    assert [leaf for leaf in leaves_before if runs[f"aleaf:{leaf[0]}.{leaf[1]}"] != 1] == []
    assert [i for i in branches_before if runs[f"branch:{i}"] != 1] == []
    assert all(runs[f"middle:{100 + i}"] == 1 for i in range(8))


@pytest.mark.parametrize(
    "program",
    [
        "run_traced.py",
        "steps.py",
    ],
    ids=["imported-module", "script-main"],
)
def test_recover_replays_recorded_traces_instead_of_running_them(
    home: Path, counter: Path, program: str
) -> None:
    args = ("traced", 20) if program == "steps.py" else (20,)
    proc = start(program, home, *args)
    run_id = the_run_id(proc)

    def traces_done() -> list[str]:
        return [
            inputs_of(a)[0]
            for a in actions(run_id)
            if a.kind == "trace" and a.task_name.endswith("ask_model") and a.status == "succeeded"
        ]

    wait_until("5 traced calls to be recorded", lambda: len(traces_done()) >= 5, proc)
    kill(proc)
    asked_before = set(traces_done())
    assert 5 <= len(asked_before) < 20

    run = heddle.recover(run_id)

    assert run.outputs() == [f"answer to q{i} (3 tokens)" for i in range(20)]
    runs = counter_lines(counter)
    rerun = sorted(p for p in asked_before if runs[f"ask:{p}"] != 1)
    assert rerun == [], f"recorded traces ran again on recovery: {rerun}"
    assert all(runs[f"ask:q{i}"] >= 1 for i in range(20))
    # The sync trace called from async code is replayed too.
    assert all(runs[f"tokens:answer to {p}"] == 1 for p in asked_before if p != max(asked_before))


@pytest.mark.parametrize(
    ("root", "executor"),
    [("sleeper", "inline"), ("sync_sleeper", "inline"), ("sync_sleeper", "process")],
    ids=["async-task", "sync-task", "sync-task-process"],
)
def test_recover_sleeps_only_the_rest_of_a_durable_sleep_and_replays_now(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, root: str, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("steps.py", home, root, 5)
    run_id = the_run_id(proc)
    wait_until("the sleep to start", lambda: count(run_id, "durable.sleep", "running") == 1, proc)
    time.sleep(1.5)
    kill(proc)
    (before_line,) = [line for line in counter_lines(counter) if line.startswith("before:")]
    recorded_now = float(before_line.removeprefix("before:"))
    time.sleep(0.5)  # the driver stays dead a while: that time counts against the sleep too

    started = time.monotonic()
    run = heddle.recover(run_id)
    took = time.monotonic() - started

    before, after = run.outputs()
    assert before == recorded_now, "durable.now() returned a new value on replay"
    assert 4.8 <= after - before <= 6.0, f"slept {after - before:.2f}s in all, wanted ~5s"
    assert took <= 4.0, f"recovery slept {took:.2f}s: the whole sleep again"
    assert counter_lines(counter)[root] == 2


@pytest.mark.slow
def test_recover_reruns_a_task_whose_code_changed_and_replays_the_rest(
    home: Path, tmp_path: Path, counter: Path
) -> None:
    program = tmp_path / "chain.py"
    shutil.copy(Path(__file__).parent / "programs" / "chain.py", program)
    proc = start(program, home, 20)
    run_id = the_run_id(proc)
    wait_until("5 steps to succeed", lambda: count(run_id, "chain.step") >= 5, proc)
    kill(proc)
    steps_before = {i for i, _ in succeeded_inputs(run_id, "chain.step")}
    checks_before = {i for i, _ in succeeded_inputs(run_id, "chain.check")}
    assert checks_before
    source = program.read_text()
    edited = source.replace('mark(f"check:{i}")', 'mark(f"check-v2:{i}")')
    assert edited != source
    program.write_text(edited)

    run = heddle.recover(run_id)

    assert run.outputs() == sum(range(20))
    runs = counter_lines(counter)
    assert all(runs[f"step:{i}"] == 1 for i in steps_before), "unchanged tasks ran again"
    assert all(runs[f"check-v2:{i}"] == 1 for i in range(20)), "changed task was replayed"
    assert all(runs[f"check:{i}"] == 1 for i in checks_before)


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_recovered_run_closes_what_its_dead_driver_left_running_and_is_never_called_again(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    marker = tmp_path / "first-driver"
    proc = start("diverge.py", home, marker)
    run_id = the_run_id(proc)
    wait_until("the child to run", lambda: count(run_id, "diverge.hang", "running") == 1, proc)
    kill(proc)

    run = heddle.recover(run_id)

    assert run.outputs() == "other"
    statuses = {a.task_name: a.status for a in actions(run_id)}
    assert statuses == {
        "diverge.root": "succeeded",
        "diverge.other": "succeeded",
        "diverge.hang": "aborted",
    }


def _assert_summary(summary: Any, n: int) -> None:
    assert summary.total == sum(i * 11 for i in range(n))
    assert [c.value for c in summary.colors] == ["blue" if i % 2 else "red" for i in range(n)]
    assert type(summary.colors[0]).__name__ == "Color"
    assert summary.detail.level.name == "HIGH" and summary.detail.inner.value == (n - 1) * 10
    assert [type(p).__name__ for p in summary.points] == ["Point"] * n


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_script_with_postponed_annotations_runs_and_recovers(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    """`from __future__ import annotations`, with the script's own dataclasses, pydantic
    models and enums as task types: they resolve in worker processes (the script's
    tasks travel there by value) and again when `heddle recover` loads the script."""
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("future_types.py", home, 12)
    run_id = the_run_id(proc)
    wait_until("3 points to be made", lambda: count(run_id, "future.make") >= 3, proc)
    kill(proc)
    made_before = {i for (i,) in succeeded_inputs(run_id, "future.make")}
    assert 3 <= len(made_before) < 12

    run = heddle.recover(run_id)

    _assert_summary(run.outputs(), 12)
    runs = counter_lines(counter)
    assert [i for i in made_before if runs[f"make:{i}"] != 1] == []
    assert runs["summarize"] == 1


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_script_with_postponed_annotations_runs_to_the_end(
    home: Path, counter: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    proc = start("future_types.py", home, 3)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "PickleFallbackWarning" not in err
    summary = json.loads(out)
    assert summary["colors"] == ["red", "blue", "red"]
    assert summary["detail"] == {"level": 2, "inner": {"value": 20, "color": "red"}}


def test_a_task_annotation_naming_an_undefined_class_fails_before_the_run_saying_what_to_do(
    home: Path, tmp_path: Path, counter: Path
) -> None:
    script = tmp_path / "undefined_name.py"
    script.write_text(
        "from __future__ import annotations\n"
        "import sys\n"
        "import heddle\n"
        "env = heddle.TaskEnvironment(name='undef')\n"
        "@env.task\n"
        "def use(p: Missing) -> int:\n"
        "    return 1\n"
        "if __name__ == '__main__':\n"
        "    heddle.init(sys.argv[1])\n"
        "    heddle.run(use, None)\n"
    )
    proc = start(script, home)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "ConfigError" in err and "'Missing' is not defined" in err
    assert "define or import" in err
    heddle.init(home)
    assert heddle._sdk.run.list_runs() == []
