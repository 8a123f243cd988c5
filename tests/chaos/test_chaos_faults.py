"""heddle._faults: crash points are named, counted per process, filtered by role, fire once
per scenario with a once-file, and cost nothing when unset. Crashing is tested in a child
process: the point is that it really SIGKILLs itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from heddle import ConfigError
from heddle._faults import POINTS, CrashPoint, parse

_HITS = """
from heddle._faults import crashpoint, set_role
import sys
set_role(sys.argv[1])
for i in range(1, 6):
    crashpoint("journal.after_commit")
    print(i, flush=True)
"""


def _hit_five_times(env: dict[str, str], role: str = "driver") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_CRASHPOINT")}
    return subprocess.run(
        [sys.executable, "-c", _HITS, role],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_crash_point_kills_its_process_at_the_named_hit() -> None:
    done = _hit_five_times({"HEDDLE_CRASHPOINT": "journal.after_commit:3"})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]


def test_unset_crash_points_do_nothing() -> None:
    done = _hit_five_times({})
    assert done.returncode == 0 and done.stdout.split() == ["1", "2", "3", "4", "5"]


def test_a_crash_point_for_another_role_does_not_fire() -> None:
    done = _hit_five_times({"HEDDLE_CRASHPOINT": "journal.after_commit@worker"}, role="driver")
    assert done.returncode == 0
    done = _hit_five_times({"HEDDLE_CRASHPOINT": "journal.after_commit@worker"}, role="worker")
    assert done.returncode == -signal.SIGKILL and done.stdout == ""


def test_with_a_once_file_only_the_first_process_crashes_and_says_where(tmp_path: Path) -> None:
    once = tmp_path / "crashed.txt"
    env = {"HEDDLE_CRASHPOINT": "journal.after_commit:2", "HEDDLE_CRASHPOINT_ONCE": str(once)}
    first = _hit_five_times(env)
    second = _hit_five_times(env)
    assert first.returncode == -signal.SIGKILL
    assert second.returncode == 0
    name, role, pid = once.read_text().split()
    assert (name, role) == ("journal.after_commit", "driver") and int(pid) > 0


def test_crash_point_specs_parse_name_hit_and_role() -> None:
    assert parse("journal.before_commit:4@driver, worker.after_body") == {
        "journal.before_commit": CrashPoint("journal.before_commit", 4, "driver"),
        "worker.after_body": CrashPoint("worker.after_body", 1, None),
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("journal.nowhere", "unknown crash point 'journal.nowhere'"),
        ("journal.mid_commit:0", "must be a positive integer"),
        ("journal.mid_commit:x", "must be a positive integer"),
        ("journal.mid_commit@server", "role in 'journal.mid_commit@server' must be one of"),
    ],
)
def test_a_bad_crash_point_spec_is_a_config_error_naming_it(spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match="HEDDLE_CRASHPOINT") as info:
        parse(spec)
    assert says in str(info.value)


def test_every_crash_point_is_placed_in_the_code() -> None:
    root = Path(__file__).resolve().parents[2] / "heddle"
    source = "\n".join(p.read_text() for p in root.rglob("*.py"))
    for name in POINTS:
        assert f'crashpoint("{name}")' in source, name
