"""The store's retry policy: backoff, the outage deadline, and which errors may pass.

The policy is plain logic with the clock and sleep passed in; the classification is
checked against errors raised by real SQLite and PostgreSQL connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

import heddle
from heddle._store.retry import RetryPolicy, Unavailable, is_transient


class FakeClock:
    """Time that moves only when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(times: int, error: Callable[[], Exception]) -> Callable[[bool], str]:
    """An attempt that fails ``times`` times with ``error()``, then returns; it records
    the ``retrying`` flag of every call."""
    calls: list[bool] = []

    def attempt(retrying: bool) -> str:
        calls.append(retrying)
        if len(calls) <= times:
            raise error()
        return "done"

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


def lost() -> Exception:
    return Unavailable(ConnectionError("server closed the connection"))


def test_delays_double_from_the_first_up_to_the_maximum() -> None:
    clock = FakeClock()
    policy = RetryPolicy(give_up_after=100, first_delay=0.1, max_delay=1.0, jitter=0)
    outage = policy.outage(clock)
    delays = [outage.next_delay() for _ in range(7)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_jitter_only_shortens_a_delay() -> None:
    policy = RetryPolicy(first_delay=1.0, max_delay=1.0, jitter=0.5)
    assert policy.outage(FakeClock(), rand=lambda: 1.0).next_delay() == 0.5
    assert policy.outage(FakeClock(), rand=lambda: 0.0).next_delay() == 1.0


def test_a_transient_failure_is_retried_and_the_retry_knows_it() -> None:
    clock = FakeClock()
    attempt = failing(3, lost)
    policy = RetryPolicy(first_delay=0.1, jitter=0)
    assert policy.call(attempt, sleep=clock.sleep, clock=clock) == "done"
    assert attempt.calls == [False, True, True, True]  # type: ignore[attr-defined]
    assert clock.slept == pytest.approx([0.1, 0.2, 0.4])


def test_any_other_error_is_raised_at_once_without_waiting() -> None:
    clock = FakeClock()
    attempt = failing(1, lambda: ValueError("bad statement"))
    with pytest.raises(ValueError, match="bad statement"):
        RetryPolicy().call(attempt, sleep=clock.sleep, clock=clock)
    assert clock.slept == []


def test_the_policy_gives_up_at_its_deadline_with_the_error_it_is_given() -> None:
    clock = FakeClock()
    policy = RetryPolicy(give_up_after=5.0, first_delay=1.0, max_delay=1.0, jitter=0)

    def give_up(last: BaseException, outage: object) -> Exception:
        return heddle.StoreUnavailableError(f"gave up after {clock.now - 100:.0f}s: {last}")

    with pytest.raises(heddle.StoreUnavailableError, match="gave up after 5s: server closed"):
        policy.call(failing(1000, lost), give_up=give_up, sleep=clock.sleep, clock=clock)
    assert sum(clock.slept) == pytest.approx(5.0)


def test_an_outage_limit_of_zero_never_retries() -> None:
    clock = FakeClock()
    with pytest.raises(Unavailable):
        RetryPolicy(give_up_after=0).call(failing(1, lost), sleep=clock.sleep, clock=clock)
    assert clock.slept == []


def test_the_outage_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEDDLE_STORE_OUTAGE_SECONDS", "7.5")
    assert RetryPolicy.from_env().give_up_after == 7.5
    monkeypatch.setenv("HEDDLE_STORE_OUTAGE_SECONDS", "soon")
    with pytest.raises(heddle.ConfigError, match="HEDDLE_STORE_OUTAGE_SECONDS='soon'"):
        RetryPolicy.from_env()
    monkeypatch.setenv("HEDDLE_STORE_OUTAGE_SECONDS", "-1")
    with pytest.raises(heddle.ConfigError):
        RetryPolicy.from_env()


# -- which errors may pass: raised by real databases ------------------------------------


def test_a_locked_sqlite_database_is_transient_and_a_bad_statement_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError) as wrong:
        other.execute("SELEKT 1")
    holder.close()
    other.close()
    assert is_transient(locked.value)
    assert not is_transient(wrong.value)


def test_a_refused_postgres_connection_is_transient() -> None:
    # Nothing listens on port 1: the connection is refused, as during a restart.
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x")
    with pytest.raises(DBAPIError) as refused:
        engine.connect()
    engine.dispose()
    assert is_transient(refused.value)
    assert is_transient(refused.value.orig)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_terminated_backend_is_transient_and_a_duplicate_key_is_not(pg_url: str) -> None:
    engine = create_engine(pg_url)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (a int PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(DBAPIError) as duplicate, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert not is_transient(duplicate.value)
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as terminated:
                conn.execute(text("SELECT 1"))
        assert is_transient(terminated.value)
    finally:
        engine.dispose()
        admin.dispose()


def test_opening_a_store_waits_at_most_ten_seconds() -> None:
    assert RetryPolicy(give_up_after=60).for_opening().give_up_after == 10
    assert RetryPolicy(give_up_after=3).for_opening().give_up_after == 3
