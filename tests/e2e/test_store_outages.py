"""Runs and the server ride out a PostgreSQL restart and dropped connections.

The restarts happen on a private cluster (the shared server is used by other tests
at the same time); dropped connections are dropped on the shared server, but only
those to the test's own database. A run must finish with the right output and no
body may run twice (each body appends a line to a ledger).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pg_cluster import PgCluster
from programs.harness import PROGRAMS, count, start, the_run_id, use_counter, wait_until
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import heddle

N = 40
SUM = sum(i * i for i in range(N))

_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HEDDLE_EXECUTOR", "process")
    return use_counter()


@pytest.fixture
def private_db(pg_cluster: PgCluster) -> Iterator[str]:
    with pg_cluster.database() as url:
        yield url


def bodies(ledger: Path) -> collections.Counter[int]:
    """How many times each child's body ran."""
    lines = ledger.read_text().splitlines()
    return collections.Counter(int(line.split(":")[1]) for line in lines)


def assert_each_body_ran_once(ledger: Path) -> None:
    ran = bodies(ledger)
    assert sorted(ran) == list(range(N)), "every child ran"
    assert [i for i, n in ran.items() if n != 1] == [], "no child ran twice"


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
        raise AssertionError(f"the driver did not finish:\n{err}") from None


def test_a_run_on_postgres_finishes_through_a_server_restart(
    pg_cluster: PgCluster, private_db: str, ledger: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    heddle.init(home, db_url=private_db)
    proc = start("ledger.py", home, N, 0.1, private_db)
    run_id = the_run_id(proc)
    wait_until("8 children to succeed", lambda: count(run_id, "ledger.work") >= 8, proc)

    pg_cluster.restart(down_seconds=3)

    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert out.strip() == str(SUM)
    assert "StoreError" not in err
    run = heddle.get_run(run_id)
    assert run.status == "succeeded"
    assert count(run_id, "ledger.work") == N
    assert_each_body_ran_once(ledger)


def test_the_server_answers_through_a_postgres_restart(
    pg_cluster: PgCluster, private_db: str, ledger: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    heddle.init(home, db_url=private_db)
    proc = start("ledger.py", home, N, 0.1, private_db)
    run_id = the_run_id(proc)
    port = _free_port()
    server = subprocess.Popen(
        [*HEDDLE, "--home", str(home), "--db-url", private_db, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    answers: list[tuple[str, int, float]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                for path in ("/runs", f"/runs/{run_id}", f"/runs/{run_id}/tree"):
                    began = time.monotonic()
                    r = client.get(base + path)
                    answers.append((path, r.status_code, time.monotonic() - began))
                time.sleep(0.05)

    try:
        wait_until("the server to answer", lambda: _answers(base), server)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        wait_until("8 children to succeed", lambda: count(run_id, "ledger.work") >= 8, proc)
        pg_cluster.restart(down_seconds=3)
        out, err = finish(proc)
        time.sleep(0.5)  # a few more answers after the run ended
        stop.set()
        poller.join(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert proc.returncode == 0, err
    assert out.strip() == str(SUM)
    failed = [a for a in answers if a[1] != 200]
    assert failed == [], f"the server failed requests during the restart: {failed[:5]}"
    assert max(a[2] for a in answers) >= 1.0, "no request spanned the outage"
    assert_each_body_ran_once(ledger)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.postgres
def test_a_run_finishes_when_its_connections_are_dropped(
    pg_url: str, ledger: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    heddle.init(home, db_url=pg_url)
    proc = start("ledger.py", home, N, 0.1, pg_url)
    run_id = the_run_id(proc)
    database = make_url(pg_url).database
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    terminated = 0
    try:
        # Drop every connection to this test's database (and only those) a few times.
        for at in (5, 15, 25):
            wait_until(
                f"{at} children to succeed", lambda at=at: count(run_id, "ledger.work") >= at, proc
            )  # type: ignore[misc]
            with admin.connect() as conn:
                terminated += len(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": database},
                    ).all()
                )
    finally:
        admin.dispose()
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert terminated >= 3, "the driver's connections were not dropped"
    assert out.strip() == str(SUM)
    assert "StoreError" not in err
    assert heddle.get_run(run_id).status == "succeeded"
    assert_each_body_ran_once(ledger)


def test_a_driver_gives_up_after_the_outage_limit_with_an_error_naming_the_store(
    pg_cluster: PgCluster, private_db: str, ledger: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    heddle.init(home, db_url=private_db)
    env = {**os.environ, "HEDDLE_STORE_OUTAGE_SECONDS": "2"}
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "ledger.py"), str(home), str(N), "0.1", private_db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    run_id = the_run_id(proc)
    wait_until("8 children to succeed", lambda: count(run_id, "ledger.work") >= 8, proc)
    pg_cluster.stop()
    try:
        _out, err = finish(proc, timeout=60)
    finally:
        pg_cluster.start()
    assert proc.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("heddle._errors.StoreUnavailableError: store "), last
    assert f"127.0.0.1:{pg_cluster.port}" in last, "the error names the store"
    assert "heddle recover" in last, "the error says what to do"
    done_before = {a.id for a in heddle.get_run(run_id).actions() if a.status == "succeeded"}

    run = heddle.recover(run_id)

    assert run.outputs() == SUM
    assert done_before <= {a.id for a in run.actions() if a.status == "succeeded"}
    ran = bodies(ledger)
    assert sorted(ran) == list(range(N))
