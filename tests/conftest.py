"""Shared fixtures: a fresh Heddle home per test, and real PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from pg_cluster import PgCluster, find_bindir

import heddle
from heddle._sdk import config

PG_ENV = "HEDDLE_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees another's store or the developer's own HEDDLE_* settings."""
    for var in ("HEDDLE_HOME", "HEDDLE_DB_URL", "HEDDLE_STORAGE_URL", "HEDDLE_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    config.reset()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh local Heddle home (SQLite + folder), made current with heddle.init.

    Uses the inline executor, so tests can share state with their tasks; tests of the
    process executor ask for it (``process_home``)."""
    path = tmp_path / "heddle-home"
    heddle.init(path, executor="inline")
    return path


@pytest.fixture
def process_home(tmp_path: Path) -> Path:
    """A fresh local Heddle home whose runs use the process executor (the default)."""
    path = tmp_path / "heddle-home"
    heddle.init(path, executor="process")
    return path


@pytest.fixture(params=["inline", "process"])
def executor_home(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh local Heddle home for each executor: runs the test inline and in worker
    processes (tasks defined in the test travel to the workers pickled by value)."""
    executor = str(request.param)
    heddle.init(tmp_path / "heddle-home", executor=executor)
    return executor


@contextmanager
def _new_pg_database(base: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``base``; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "heddle_t_" + uuid.uuid4().hex[:12]
    admin = create_engine(
        make_url(base).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        config.reset()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def new_pg_database() -> Callable[[], AbstractContextManager[str]]:
    """Makes PostgreSQL databases (``with new_pg_database() as url:``), or skips."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL to test against")
    return lambda: _new_pg_database(base)


@pytest.fixture
def pg_url(new_pg_database: Callable[[], AbstractContextManager[str]]) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    with new_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: runs the test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def any_home(db_url: str, tmp_path: Path) -> str:
    """heddle.init on each backend (with a local folder for blobs); returns the db URL."""
    heddle.init(tmp_path / "heddle-home", db_url=db_url, executor="inline")
    return db_url


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL server that tests may stop and restart (the shared one is
    used by other tests at the same time); skips when no PostgreSQL binaries are here."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) to start a private cluster")
    try:
        cluster = PgCluster(bindir)
    except (OSError, RuntimeError, KeyError) as exc:
        pytest.skip(f"cannot start a private PostgreSQL cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.destroy()
