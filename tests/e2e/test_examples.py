"""Every example in examples/ runs as a user would run it, and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, cwd: Path, executor: str | None = None) -> str:
    """``python examples/<name>`` in a fresh directory (so .heddle/ lands there); its stdout."""
    env = dict(os.environ)
    if executor is not None:
        env["HEDDLE_EXECUTOR"] = executor
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr}"
    assert (cwd / ".heddle").is_dir(), f"{name} did not record its runs in .heddle/"
    return proc.stdout


def test_every_example_is_tested() -> None:
    tested = {"quickstart.py", "fanout.py", "error_handling.py", "recovery.py", "caching.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("executor", ["inline", None], ids=["inline", "default-process"])
def test_quickstart_fits_a_line_and_points_at_the_run(tmp_path: Path, executor: str | None) -> None:
    out = run_example("quickstart.py", tmp_path, executor)
    assert "succeeded" in out
    assert "best model: y = 3.0" in out
    assert "predictions at x = 0, 0.25 .. 1: [" in out
    assert "rejected: learning rate must be positive" in out
    assert "Try: heddle runs show r" in out


@pytest.mark.slow
def test_fanout_runs_ten_thousand_children(tmp_path: Path) -> None:
    out = run_example("fanout.py", tmp_path)
    assert "scored 10000 items" in out
    assert "2 of 2000 checks failed" in out
    assert "12001 actions recorded" in out


@pytest.mark.parametrize(
    "executor",
    ["inline", None],
    ids=["inline", "default-process"],
)
def test_error_handling_shows_retries_non_recoverable_errors_and_timeouts(
    tmp_path: Path, executor: str | None
) -> None:
    out = run_example("error_handling.py", tmp_path, executor)
    assert "flaky_fetch succeeded after retries" in out
    assert "parse_config failed without retrying" in out
    assert "charge declined, charging less instead: charged 50" in out
    assert "slow_report timed out" in out
    assert "errors.flaky_fetch   succeeded  attempts=3" in out
    assert "errors.parse_config  failed     attempts=1" in out


@pytest.mark.slow
def test_recovery_example_replays_what_succeeded_before_the_kill(tmp_path: Path) -> None:
    out = run_example("recovery.py", tmp_path)
    assert "killed it with SIGKILL after" in out
    assert "status in the store: running" in out
    assert "recovered: succeeded, output 70210 (expected 70210)" in out
    assert "replayed from the log:" in out


def test_caching_serves_the_second_run_from_the_cache(tmp_path: Path) -> None:
    out = run_example("caching.py", tmp_path)
    lines = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(lines) == 3
    assert "0 of 6 children served from the cache" in lines[0]
    assert "6 of 6 children served from the cache" in lines[1]
    assert "6 of 6 children served from the cache" in lines[2]
