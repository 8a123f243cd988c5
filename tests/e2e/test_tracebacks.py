"""A failing task's own traceback — its file, line and function, with chained causes —
reaches every surface: the exception the caller gets, ``heddle run``, ``heddle runs show``
(and ``--json``) and the server's API, on the inline and the process executor, whether the
program was imported, run as ``python file.py`` or run with ``heddle run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from programs.frames import CAUGHT, FAILING, MAIN, assert_user_traceback
from programs.harness import PROGRAMS

import heddle
from heddle._sdk.config import get_session
from heddle.cli import cli
from heddle.server import create_app
from heddle.server.testing import LiveServer

_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]


@pytest.fixture
def failing_module() -> Iterator[object]:
    sys.path.insert(0, str(PROGRAMS))
    try:
        import failing

        yield failing
    finally:
        sys.path.remove(str(PROGRAMS))


def _start(start: str, home: Path, module: object) -> tuple[str, str]:
    """Run failing.main; return the run id and what the caller saw of the error."""
    if start == "api":
        run = heddle.run(module.main)  # type: ignore[attr-defined]
        with pytest.raises(ValueError) as info:
            run.outputs()
        return run.id, "".join(traceback.format_exception(info.value))
    if start == "script":
        proc = subprocess.run(
            [sys.executable, str(FAILING), str(home), "main"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split("RUN ")[-1].strip(), proc.stdout
    proc = subprocess.run(
        [*HEDDLE, "--home", str(home), "run", str(FAILING), "main", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    (run_id,) = [r.id for r in get_session().store.list_runs()]
    return run_id, proc.stderr


@pytest.mark.parametrize("executor", ["inline", "process"])
@pytest.mark.parametrize("start", ["api", "script", "cli"])
def test_a_failing_tasks_traceback_reaches_every_surface(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing_module: object,
    start: str,
    executor: str,
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)
    heddle.init(home, executor=executor)

    run_id, seen = _start(start, home, failing_module)

    assert_user_traceback(seen, MAIN)
    if start == "cli":
        # Where it failed, and where to look.
        assert "failing.main → failing.leaf" in seen, seen
        assert f"heddle runs show {run_id}" in seen, seen
        assert f"/runs/{run_id}" in seen, seen
        assert "_runtime" not in seen and "_executors" not in seen, "Heddle's frames are shown"

    shown = CliRunner().invoke(cli, ["--home", str(home), "runs", "show", run_id])
    assert shown.exit_code == 0, shown.output
    assert_user_traceback(shown.stdout)
    assert "failing.main → failing.leaf" in shown.stdout

    as_json = CliRunner().invoke(cli, ["--home", str(home), "runs", "show", run_id, "--json"])
    doc = json.loads(as_json.stdout)
    assert_user_traceback(doc["error"]["traceback"], MAIN)
    (leaf,) = [a for a in doc["actions"] if a["task_name"] == "failing.leaf"]
    assert_user_traceback(leaf["error"]["traceback"])
    assert_user_traceback(leaf["attempt_history"][-1]["error"]["traceback"])

    heddle.init(home, executor=executor)
    with LiveServer(create_app()) as server, httpx.Client(base_url=server.url) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        assert_user_traceback(run["error"]["traceback"], MAIN)
        action = client.get(f"/api/v1/runs/{run_id}/actions/{leaf['id']}").json()
        assert_user_traceback(action["error"]["traceback"])


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_parent_that_catches_a_childs_error_sees_where_it_was_raised(
    home: Path, failing_module: object, executor: str
) -> None:
    run = heddle.run(failing_module.catcher, executor=executor)  # type: ignore[attr-defined]

    seen = run.outputs()

    assert_user_traceback(seen, CAUGHT)


def test_a_script_run_as_main_shows_its_own_file_in_worker_tracebacks(home: Path) -> None:
    # Its tasks reach the process executor's workers pickled by value.
    proc = subprocess.run(
        [sys.executable, str(FAILING), str(home), "catcher"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEDDLE_EXECUTOR": "process"},
    )
    assert proc.returncode == 0, proc.stderr
    assert_user_traceback(proc.stdout, CAUGHT)
    assert "<dynamic-code>" not in proc.stdout
