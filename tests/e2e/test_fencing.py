"""A forced recover takes a run from a driver that is still alive: the old driver is
fenced (every write it makes checks the run's generation) and stops without writing,
the new one finishes, and no body that succeeded runs twice. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from programs.harness import (
    PROGRAMS,
    count,
    succeeded_inputs,
    the_run_id,
    use_counter,
    wait_until,
)
from sqlalchemy import create_engine, select

import heddle
from heddle._store.schema import run_events

N = 40
SUM = sum(i * i for i in range(N))
_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]


def heddle_cmd(home: Path, db_url: str, tag: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    env.update(
        HEDDLE_EXECUTOR="process",
        HEDDLE_TEST_COUNTER=os.environ["HEDDLE_TEST_COUNTER"],
        HEDDLE_TEST_TAG=tag,
    )
    return subprocess.Popen(
        [*HEDDLE, "--home", str(home), "--db-url", db_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def ledger_lines(ledger: Path) -> list[tuple[int, str, float]]:
    out = []
    for line in ledger.read_text().splitlines():
        _, i, tag, at = line.split(":")
        out.append((int(i), tag, float(at)))
    return out


def test_forced_recover_fences_the_old_driver_which_stops_without_writing(
    db_url: str, tmp_path: Path
) -> None:
    ledger = use_counter()
    home = tmp_path / "home"
    heddle.init(home, db_url=db_url)
    old = heddle_cmd(
        home, db_url, "old", "run", str(PROGRAMS / "ledger.py"), "main",
        "--n", str(N), "--pause", "0.5", "--quiet",
    )  # fmt: skip
    run_id = the_run_id(old)
    wait_until("6 children to succeed", lambda: count(run_id, "ledger.work") >= 6, old)
    succeeded_before = {i for i, _ in succeeded_inputs(run_id, "ledger.work")}

    new = heddle_cmd(home, db_url, "new", "recover", "--force", "--quiet", "--json", run_id)
    new_out, new_err = new.communicate(timeout=180)
    _old_out, old_err = old.communicate(timeout=60)

    assert new.returncode == 0, new_err
    assert new_out.strip() == str(SUM)
    assert old.returncode == 1, old_err
    assert "taken over" in old_err, old_err
    for err in (old_err, new_err):
        assert "StoreError" not in err and "duplicate" not in err.lower(), err
    run = heddle.get_run(run_id)
    assert run.status == "succeeded"
    assert run.record.generation == 1
    assert count(run_id, "ledger.work") == N

    lines = ledger_lines(ledger)
    ran = collections.Counter(i for i, _, _ in lines)
    assert sorted(ran) == list(range(N))
    # Children that succeeded before the takeover never ran again.
    assert [i for i in succeeded_before if ran[i] != 1] == []
    # The old driver stopped at once: none of its workers started a body once it
    # was fenced (a body it dispatched just before its next commit may still start).
    claimed_at = _claimed_at(db_url, run_id)
    late = [(i, at - claimed_at) for i, tag, at in lines if tag == "old" and at > claimed_at + 1.0]
    assert late == [], f"the old driver kept starting bodies after the takeover: {late}"
    assert {tag for _, tag, _ in lines} == {"old", "new"}


def _claimed_at(db_url: str, run_id: str) -> float:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(run_events.c.at, run_events.c.kind).where(run_events.c.run_id == run_id)
            ).all()
    finally:
        engine.dispose()
    claims = [at for at, kind in rows if kind == "recovered"]
    assert len(claims) == 1, rows
    return float(claims[0])
