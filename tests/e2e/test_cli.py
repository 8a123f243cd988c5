"""End-to-end tests of the ``heddle`` command: real subprocesses, plus Click's runner where faster.

Every test has its own Heddle home under tmp_path, so no state leaks between tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner, Result

from heddle._runtime.literals import LiteralStore
from heddle._storage import BlobStore
from heddle._store import Store, sqlite_url
from heddle.cli import cli

PROGRAMS = Path(__file__).parent / "cli_programs"
PARAMS = str(PROGRAMS / "params.py")
SHAPES = str(PROGRAMS / "shapes.py")
CRASH = str(PROGRAMS / "crash.py")

_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]


# The CLI behaves the same on every executor (they have their own tests); inline is the fastest.
EXECUTOR = "inline"


@pytest.fixture(autouse=True)
def _inline_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", EXECUTOR)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def clean_env() -> dict[str, str]:
    """This process's environment without HEDDLE_* settings, except the executor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    env["HEDDLE_EXECUTOR"] = EXECUTOR
    return env


def heddle_cmd(home: Path, *args: str) -> list[str]:
    return [*HEDDLE, "--home", str(home), *args]


def sh(home: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the installed command in a subprocess, as a user would."""
    return subprocess.run(
        heddle_cmd(home, *args), capture_output=True, text=True, timeout=timeout, env=clean_env()
    )


def invoke(home: Path, *args: str) -> Result:
    """Run the command in this process (no interpreter start-up)."""
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def run_ids(home: Path) -> list[str]:
    result = invoke(home, "runs", "list", "--json")
    if result.exit_code == 1 and "no Heddle store at" in result.stderr:
        return []  # nothing was ever recorded in this home
    assert result.exit_code == 0, result.output
    return [r["id"] for r in json.loads(result.stdout)]


# -- heddle run ----------------------------------------------------------------------------


def test_run_converts_typed_options_into_real_python_values(home: Path) -> None:
    proc = sh(
        home,
        *("run", PARAMS, "describe"),
        *("--n", "10", "--ratio", "2.5", "--label", "hello world", "--verbose"),
        *("--xs", "[3, 4, 5]", "--point", '{"x": 1, "y": 2}', "--learning-rate", "0.01"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "n": "10",
        "ratio": "2.5",
        "label": "'hello world'",
        "verbose": "True",
        "xs": "[3, 4, 5]",
        "point": "Point(x=1, y=2)",
        "learning_rate": "0.01",
    }
    assert "succeeded" in proc.stderr


def test_run_uses_signature_defaults_and_accepts_underscored_names(home: Path) -> None:
    result = invoke(home, "run", PARAMS, "describe", "--n", "1", "--learning_rate", "3", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["ratio"] == "0.5"
    assert out["label"] == "'plain'"
    assert out["verbose"] == "False"
    assert out["xs"] == "[1, 2]"
    assert out["point"] == "None"
    assert out["learning_rate"] == "3.0"


def test_run_prints_run_id_status_and_pretty_output(home: Path) -> None:
    result = invoke(home, "run", PARAMS, "describe", "--n", "4", "--quiet", "--executor", "inline")
    assert result.exit_code == 0, result.output
    (run_id,) = run_ids(home)
    assert f"run {run_id} succeeded" in result.stdout
    assert "'n': '4'" in result.stdout


def test_run_task_help_lists_parameters_types_defaults_and_docstring(home: Path) -> None:
    result = invoke(home, "run", PARAMS, "describe", "--help")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Describe the inputs it was given" in text
    for expected in (
        "--n INTEGER",
        "[required]",
        "--ratio FLOAT",
        "[default: 0.5]",
        "--verbose / --no-verbose",
        "--xs JSON",
        "list[int] as JSON",
        "Point | None as JSON",
        "--learning-rate",
    ):
        assert expected in text, expected
    assert run_ids(home) == []


def test_run_file_help_lists_its_tasks(home: Path) -> None:
    result = invoke(home, "run", PARAMS, "--help")
    assert result.exit_code == 0, result.output
    assert "describe" in result.stdout
    assert "named" in result.stdout


def test_run_options_move_aside_for_task_parameters_of_the_same_name(home: Path) -> None:
    result = invoke(
        home, "run", PARAMS, "named", "--name", "x", "--quiet", "--run-name", "mine", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == "x:True"
    listing = invoke(home, "runs", "list", "--name", "mine", "--json")
    assert [r["name"] for r in json.loads(listing.stdout)] == ["mine"]


def test_failing_task_exits_1_with_its_error_and_user_traceback(home: Path) -> None:
    proc = sh(home, "run", SHAPES, "fails", "--quiet")
    assert proc.returncode == 1
    assert "ValueError: cannot handle 7" in proc.stderr
    assert "failed" in proc.stderr
    # The user's own frames are shown; Heddle's internals are not.
    assert 'shapes.py", line' in proc.stderr
    assert "_runtime" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((PARAMS, "nope"), "no task 'nope'"),
        (("missing.py", "main"), "no such Python file: missing.py"),
        ((PARAMS, "describe"), "Missing option '--n'"),
        ((PARAMS, "describe", "--n", "1", "--xs", "[1,"), "expected JSON for list[int]"),
        ((PARAMS, "describe", "--n", "ten"), "'ten' is not a valid integer"),
        ((PARAMS, "describe", "--n", "1", "--xs", '[1, "a"]'), "at [1]"),
        ((PARAMS, "describe", "--n", "1", "--point", '{"y": 1}'), "--point"),
        ((PARAMS, "describe", "--n", "1", "--bogus", "1"), "No such option '--bogus'"),
    ],
    ids=[
        "unknown-task",
        "missing-file",
        "missing-required",
        "bad-json",
        "wrong-scalar-type",
        "wrong-item-type",
        "wrong-dataclass-field",
        "unknown-option",
    ],
)
def test_input_errors_exit_2_with_one_line_and_record_no_run(
    home: Path, args: tuple[str, ...], message: str
) -> None:
    result = invoke(home, "run", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert run_ids(home) == []


def test_program_that_fails_to_import_is_reported_with_its_line(home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import heddle\n\nraise RuntimeError('no config')\n")
    result = invoke(home, "run", str(broken), "main")
    assert result.exit_code == 2
    assert "(line 3): RuntimeError: no config" in result.stderr
    assert run_ids(home) == []


def test_input_error_from_a_subprocess_has_no_python_traceback(home: Path) -> None:
    proc = sh(home, "run", PARAMS, "describe", "--n", "1", "--xs", "{not json")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--xs" in proc.stderr


# -- heddle runs -----------------------------------------------------------------------------


def test_runs_list_shows_runs_with_status_and_action_counts(home: Path, tmp_path: Path) -> None:
    assert invoke(home, "run", PARAMS, "describe", "--n", "1", "--name", "first").exit_code == 0
    assert invoke(home, "run", SHAPES, "fails", "--quiet").exit_code == 1
    result = invoke(home, "runs", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "RUN",
        "NAME",
        "TASK",
        "STATUS",
        "CREATED",
        "DURATION",
        "ACTIONS",
        "FAILED",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert len(rows) == 2
    failed_row = next(line for line in rows.values() if "shapes.fails" in line)
    assert "failed" in failed_row
    assert failed_row.split()[-2:] == ["2", "2"]  # two actions, both failed
    ok_row = next(line for line in rows.values() if "params.describe" in line)
    assert "first" in ok_row
    assert "succeeded" in ok_row

    only_failed = invoke(home, "runs", "list", "--status", "failed", "--json")
    assert [r["root_task"] for r in json.loads(only_failed.stdout)] == ["shapes.fails"]
    by_task = invoke(home, "runs", "list", "--task", "describe", "--json")
    assert [r["name"] for r in json.loads(by_task.stdout)] == ["first"]


def test_runs_show_draws_tree_with_cache_hit_retry_group_and_summarised_fanout(
    home: Path, tmp_path: Path
) -> None:
    marker = str(tmp_path / "flaky-marker")
    result = invoke(home, "run", SHAPES, "tree", "--marker", marker, "--quiet")
    assert result.exit_code == 0, result.output
    (run_id,) = run_ids(home)

    shown = invoke(home, "runs", "show", run_id[:8])  # a unique prefix is enough
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert f"run {run_id}" in text
    assert "shapes.tree" in text
    assert "cache hit" in text
    assert "2 attempts (retried after RuntimeError)" in text
    assert "group fan" in text
    assert text.count("shapes.leaf") == 20
    assert "… 80 more: 80 succeeded" in text
    assert len(text.splitlines()) < 45


def test_runs_show_json_has_the_run_and_every_action(home: Path, tmp_path: Path) -> None:
    marker = str(tmp_path / "flaky-marker")
    assert invoke(home, "run", SHAPES, "tree", "--marker", marker, "--width", "5").exit_code == 0
    (run_id,) = run_ids(home)
    result = invoke(home, "runs", "show", run_id, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["id"] == run_id
    assert doc["status"] == "succeeded"
    assert doc["output"] == 9 + 9 + sum(range(5))
    names = Counter(a["task_name"] for a in doc["actions"])
    assert names == {"shapes.tree": 1, "shapes.square": 2, "shapes.flaky": 1, "shapes.leaf": 5}
    flaky = next(a for a in doc["actions"] if a["task_name"] == "shapes.flaky")
    assert [t["status"] for t in flaky["attempt_history"]] == ["failed", "succeeded"]
    assert sum(a["cached"] for a in doc["actions"]) == 1


def test_unknown_run_id_is_a_one_line_error_with_exit_1(home: Path) -> None:
    Store(sqlite_url(home / "heddle.db")).close()
    proc = sh(home, "runs", "show", "rdoesnotexist")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: no run 'rdoesnotexist' in the store"


def test_corrupt_store_is_a_one_line_error(home: Path) -> None:
    home.mkdir()
    (home / "heddle.db").write_bytes(b"this is not a database" * 100)
    result = invoke(home, "runs", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: store ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_heddle_home_comes_from_the_environment_without_home_option(tmp_path: Path) -> None:
    env_home = tmp_path / "env-home"
    runner = CliRunner(env={"HEDDLE_HOME": str(env_home), "HEDDLE_EXECUTOR": EXECUTOR})
    assert runner.invoke(cli, ["run", PARAMS, "describe", "--n", "2", "--quiet"]).exit_code == 0
    assert (env_home / "heddle.db").exists()
    listing = runner.invoke(cli, ["runs", "list", "--json"])
    assert len(json.loads(listing.stdout)) == 1


# -- heddle abort / recover --------------------------------------------------------------------


def test_abort_of_a_finished_run_prints_its_status(home: Path) -> None:
    assert invoke(home, "run", PARAMS, "describe", "--n", "1").exit_code == 0
    (run_id,) = run_ids(home)
    result = invoke(home, "abort", run_id)
    assert result.exit_code == 0, result.output
    assert f"run {run_id} succeeded (already finished)" in result.stdout


def test_recover_of_a_succeeded_run_is_refused(home: Path) -> None:
    assert invoke(home, "run", PARAMS, "describe", "--n", "1").exit_code == 0
    (run_id,) = run_ids(home)
    result = invoke(home, "recover", run_id)
    assert result.exit_code == 1
    assert "already succeeded" in result.stderr


def _succeeded_children(store: Store, literals: LiteralStore, run_id: str) -> list[int]:
    """The inputs ``i`` of the children recorded as succeeded."""
    return [
        msgspec.msgpack.decode(literals.from_literal(a.inputs))[0]
        for a in store.actions_of_run(run_id)
        if a.status == "succeeded" and a.task_name == "crash.child" and a.inputs is not None
    ]


def test_recover_after_sigkill_finishes_without_rerunning_succeeded_children(
    home: Path, tmp_path: Path
) -> None:
    log = tmp_path / "executions.log"
    n = 90
    proc = subprocess.Popen(
        heddle_cmd(home, "run", CRASH, "main", "--log", str(log), "--n", str(n), "--quiet"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    store: Store | None = None
    literals = LiteralStore(BlobStore(str(home / "storage")))
    try:
        deadline = time.monotonic() + 20
        run_id = None
        while time.monotonic() < deadline:
            if store is None and (home / "heddle.db").exists():
                store = Store(sqlite_url(home / "heddle.db"))
            if store is not None:
                runs = store.list_runs()
                if runs:
                    run_id = runs[0].id
                    if len(_succeeded_children(store, literals, run_id)) >= 9:
                        break
            time.sleep(0.02)
        assert store is not None and run_id is not None, "the run never got going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        done_before = _succeeded_children(store, literals, run_id)
        assert store.get_run(run_id).status == "running"
        assert len(done_before) < n, "the run finished before it was killed"

        listing = invoke(home, "runs", "show", run_id)
        assert "driver gone" in listing.stdout

        recovered = sh(home, "recover", run_id, "--json")
        assert recovered.returncode == 0, recovered.stderr
        assert json.loads(recovered.stdout) == sum(range(n))

        runs_of_child = Counter(log.read_text().split())
        assert set(runs_of_child) == {str(i) for i in range(n)}
        # A child that had succeeded before the kill is replayed, never executed again.
        assert all(runs_of_child[str(i)] == 1 for i in done_before)
        assert sum(runs_of_child.values()) <= n + 3  # at most the 3 in flight ran twice
        assert store.get_run(run_id).status == "succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if store is not None:
            store.close()
