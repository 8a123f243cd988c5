"""The command line at its edges: JSON that pydantic would coerce (true for an int),
JSON nested too deep, arguments that are not UTF-8, and programs that exit while being
imported. Each is a one-line error with a usage exit code, never "internal error"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from heddle.cli import cli

EDGES = str(Path(__file__).parent / "cli_programs" / "edges.py")
_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]


@pytest.fixture(autouse=True)
def _inline_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", "inline")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args])


def sh(home: Path, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """The installed command in a subprocess; bytes arguments reach it unchanged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    env["HEDDLE_EXECUTOR"] = "inline"
    return subprocess.run(
        [*HEDDLE, "--home", str(home), *args], capture_output=True, timeout=60, env=env
    )


def no_runs(home: Path) -> bool:
    """Nothing was recorded: the store lists no runs, or there is no store at all."""
    result = invoke(home, "runs", "list")
    return "no runs" in result.stdout or "no Heddle store at" in result.output


def one_usage_error(result: Result, *expected: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "internal error" not in lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("task", "option", "value", "where"),
    [
        ("ints", "--xs", "[true]", "[0]"),
        ("ints", "--xs", "[1, 2.0]", "[1]"),
        ("counts", "--by-name", '{"a": false}', "a"),
        ("floats", "--xs", "[1.5, true]", "[1]"),
    ],
)
def test_json_values_of_the_wrong_type_are_refused_not_coerced(
    home: Path, task: str, option: str, value: str, where: str
) -> None:
    result = invoke(home, "run", EDGES, task, option, value)
    one_usage_error(result, option, where)
    assert no_runs(home)


def test_json_ints_for_floats_are_still_accepted(home: Path) -> None:
    result = invoke(home, "run", EDGES, "floats", "--xs", "[1, 2.5]", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [1.0, 2.5]


@pytest.mark.parametrize("task", ["ints", "anything"])
def test_json_nested_too_deep_is_a_usage_error(home: Path, task: str) -> None:
    option = "--xs" if task == "ints" else "--x"
    deep = "[" * 5000 + "]" * 5000
    one_usage_error(invoke(home, "run", EDGES, task, option, deep), option, "deep")
    assert no_runs(home)


@pytest.mark.parametrize(
    ("task", "option"), [("text", "--s"), ("anything", "--x"), ("ints", "--xs")]
)
def test_an_argument_that_is_not_utf8_is_a_usage_error(home: Path, task: str, option: str) -> None:
    proc = sh(home, "run", EDGES, task, option, b"caf\xe9")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.decode()
    assert "internal error" not in err and "Traceback" not in err
    assert "UTF-8" in err and option in err
    assert no_runs(home)


def test_a_run_name_that_is_not_utf8_is_a_usage_error(home: Path) -> None:
    proc = sh(home, "run", EDGES, "text", "--s", "ok", "--name", b"\xff\xfe")
    assert proc.returncode == 2, proc.stderr
    assert "UTF-8" in proc.stderr.decode() and "--name" in proc.stderr.decode()


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        ("import sys\nsys.exit(3)\n", 3, "exited with code 3"),
        ("raise SystemExit('no config here')\n", 2, "no config here"),
        ("import sys\nsys.exit(0)\n", 2, "exited with code 0"),
    ],
)
def test_a_program_that_exits_while_imported_says_so(
    home: Path, tmp_path: Path, body: str, code: int, said: str
) -> None:
    program = tmp_path / "quits.py"
    program.write_text(body)
    proc = sh(home, "run", str(program), "main")
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert f"program {program}" in err and "while being imported" in err
    assert said in err
    assert "Traceback" not in err
