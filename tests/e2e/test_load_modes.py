"""An action's identity does not depend on how its program was started or recovered.

The same program (programs/modes.py: tasks, async and sync traces, a group, durable.now,
durable.sleep, a cache hit) is started as ``python modes.py``, as ``heddle run modes.py
main`` and from stdin (code with no file, as in a notebook), killed with SIGKILL at a gate,
and recovered with ``heddle recover`` and with ``heddle.recover``, on the inline and the
process executor. Its ledger of body executions proves that nothing recorded ran again.
"""

from __future__ import annotations

import ast
import collections
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from programs.harness import PROGRAMS, actions, kill, the_run_id, wait_until

import heddle
from heddle._sdk.config import get_session

MODES = PROGRAMS / "modes.py"
_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]

# What ran before the gate: each of these bodies ran once and was recorded, so it must
# not run again on recovery.
RECORDED = [
    "ask:q0",
    "ask:q1",
    "ask:q2",
    "ask:in a group",
    "count:one two three",
    "work:0",
    "work:1",
    "ask:work 0",
    "ask:work 1",
    "cached:3",
]


def _ledger(path: Path) -> collections.Counter[str]:
    return (
        collections.Counter(path.read_text().splitlines())
        if path.exists()
        else collections.Counter()
    )


def _start(start: str, home: Path, ledger: Path, marker: Path) -> subprocess.Popen[str]:
    if start == "python":
        cmd = [sys.executable, str(MODES), "run", str(home), str(ledger), str(marker)]
    elif start == "heddle-run":
        cmd = [
            *HEDDLE,
            *("--home", str(home), "run", str(MODES), "main"),
            *("--ledger", str(ledger), "--marker", str(marker), "--quiet"),
        ]
    else:  # stdin: code with no file behind it, like a notebook cell
        cmd = [sys.executable, "-", "run", str(home), str(ledger), str(marker)]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=MODES.parent if start == "stdin" else None,
    )
    if start == "stdin":
        assert proc.stdin is not None
        proc.stdin.write(MODES.read_text())
        proc.stdin.close()
        proc.stdin = None
    return proc


def _recover(recover: str, start: str, home: Path, run_id: str) -> dict[str, object]:
    """Recover the run and return its outputs."""
    if recover == "cli":
        proc = subprocess.run(
            [*HEDDLE, "--home", str(home), "recover", run_id, "--quiet", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out: dict[str, object] = json.loads(proc.stdout)
        return out
    if start == "stdin":
        # A notebook recovers its run from the same code, in a new session.
        proc = subprocess.run(
            [sys.executable, "-", "recover", str(home), run_id],
            input=MODES.read_text(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        value: dict[str, object] = ast.literal_eval(proc.stdout.strip().splitlines()[-1])
        return value
    result: dict[str, object] = heddle.recover(run_id).outputs()
    return result


CASES = [
    (start, recover, executor)
    for executor in ("inline", "process")
    for start in ("python", "heddle-run", "stdin")
    for recover in ("cli", "api")
    if not (start == "stdin" and recover == "cli")
]


@pytest.mark.parametrize(("start", "recover", "executor"), CASES, ids=["-".join(c) for c in CASES])
def test_recovery_replays_every_recorded_step_however_the_program_was_started(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start: str,
    recover: str,
    executor: str,
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", executor)  # the run records it; recover reuses it
    ledger, marker = tmp_path / "ledger.txt", tmp_path / "open-the-gate"
    proc = _start(start, home, ledger, marker)
    run_id = the_run_id(proc)
    wait_until("the run to reach its gate", lambda: _ledger(ledger)["gate"] == 1, proc)
    kill(proc)
    before = _ledger(ledger)
    recorded = {a.id: a for a in actions(run_id)}
    (now_step,) = [a for a in recorded.values() if a.task_name == "durable.now"]
    assert now_step.output is not None

    marker.touch()
    out = _recover(recover, start, home, run_id)

    after = _ledger(ledger)
    ran_again = {line: after[line] - before[line] for line in RECORDED if after[line] != 1}
    assert ran_again == {}, f"recorded bodies ran again on recovery: {ran_again}"
    assert after["main"] == 2 and after["gate"] == 2  # they were running at the kill
    assert after["ask:after the gate"] == 1
    assert out["answers"] == [
        "Q0",
        "Q1",
        "Q2",
        "IN A GROUP",
        "WORK 0",
        "WORK 1",
        "AFTER THE GATE",
    ]
    assert out["squares"] == [9, 9]
    now = get_session().literals.from_literal(now_step.output)
    assert out["now"] == pytest.approx(msgspec.msgpack.decode(now))

    final = actions(run_id)
    # Every step recorded before the kill is the same row, replayed rather than redone.
    for a in final:
        prior = recorded.get(a.id)
        if prior is not None and prior.status == "succeeded":
            assert (a.status, a.attempts, a.finished_at) == (
                "succeeded",
                prior.attempts,
                prior.finished_at,
            ), (a.kind, a.task_name, a.attempts, prior.attempts)
    module = "__main__" if start == "stdin" else "modes"
    names = collections.Counter((a.kind, a.task_name) for a in final)
    assert names == {
        ("task", "modes.main"): 1,
        ("trace", f"{module}.ask"): 7,
        ("trace", f"{module}.count_words"): 1,
        ("now", "durable.now"): 1,
        ("sleep", "durable.sleep"): 1,
        ("task", "modes.work"): 2,
        ("task", "modes.cached"): 2,
        ("task", "modes.gate"): 1,
    }
    (grouped,) = [a for a in final if a.kind == "trace" and a.group_name is not None]
    assert grouped.group_name == "phase"
    assert sum(a.cached for a in final) == 1


def test_heddle_recover_names_the_fix_for_a_run_started_from_code_without_a_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEDDLE_EXECUTOR", "inline")
    ledger, marker = tmp_path / "ledger.txt", tmp_path / "open-the-gate"
    proc = _start("stdin", home, ledger, marker)
    run_id = the_run_id(proc)
    wait_until("the run to reach its gate", lambda: _ledger(ledger)["gate"] == 1, proc)
    kill(proc)

    cli = subprocess.run(
        [*HEDDLE, "--home", str(home), "recover", run_id, "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert cli.returncode == 1
    assert "no file" in cli.stderr and "heddle.recover" in cli.stderr, cli.stderr
    assert heddle.get_run(run_id).status == "running"
