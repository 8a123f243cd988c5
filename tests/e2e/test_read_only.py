"""Commands that only look at runs open the store read-only and never create one: a
missing store is a one-line error naming where Heddle looked (exit 1), and nothing
appears on disk or in the database."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

import heddle
from heddle._sdk import config
from heddle.cli import cli

PARAMS = str(Path(__file__).parent / "cli_programs" / "params.py")
_SCRIPT = Path(sys.executable).parent / "heddle"
HEDDLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "heddle.cli"]

LOOKING = [
    ("runs", "list"),
    ("runs", "list", "--json"),
    ("runs", "show", "r0123456789"),
    ("logs", "r0123456789"),
    ("abort", "r0123456789"),
    ("recover", "r0123456789"),
]


def sh(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    return subprocess.run(
        [*HEDDLE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "HEDDLE_EXECUTOR": "inline", **(env or {})},
    )


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("args", LOOKING, ids=lambda a: " ".join(a))
def test_a_missing_sqlite_store_is_an_error_and_nothing_is_created(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    proc = sh(tmp_path, "--db-url", f"sqlite:///{db}", *args)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        f"error: no Heddle store at {db} — run something first, or pass --db-url/HEDDLE_HOME"
    )
    assert tree(tmp_path) == [], "nothing is created"


@pytest.mark.parametrize("args", LOOKING, ids=lambda a: " ".join(a))
def test_commands_in_a_folder_without_a_store_do_not_create_dot_heddle(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    proc = sh(tmp_path, *args)
    assert proc.returncode == 1, proc.stderr
    expected = tmp_path / ".heddle" / "heddle.db"
    assert f"no Heddle store at {expected}" in proc.stderr
    assert tree(tmp_path) == []


def test_a_missing_heddle_home_from_the_environment_is_named(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    proc = sh(tmp_path, "runs", "list", env={"HEDDLE_HOME": str(home)})
    assert proc.returncode == 1
    assert f"no Heddle store at {home / 'heddle.db'}" in proc.stderr
    assert not home.exists()


def test_serve_on_a_missing_store_answers_503_until_a_run_makes_it(tmp_path: Path) -> None:
    port = _free_port()
    home = tmp_path / "home"
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEDDLE_")}
    server = subprocess.Popen(
        [*HEDDLE, "--home", str(home), "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=base,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(api + "/health", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert health.json()["store"] == "sqlite"
        missing = httpx.get(api + "/runs", timeout=5)
        assert missing.status_code == 503
        assert missing.json()["detail"].startswith(f"no Heddle store at {home / 'heddle.db'}")
        assert tree(tmp_path) == [], "the server creates nothing"

        made = sh(tmp_path, "--home", str(home), "run", PARAMS, "describe", "--n", "2", "--quiet")
        assert made.returncode == 0, made.stderr
        listed = httpx.get(api + "/runs", timeout=5)
        assert listed.status_code == 200
        assert len(listed.json()["runs"]) == 1
    finally:
        server.terminate()
        _out, err = server.communicate(timeout=10)
    assert f"warning: no Heddle store at {home / 'heddle.db'}" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_reading_an_existing_store_leaves_its_file_unchanged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner(env={"HEDDLE_EXECUTOR": "inline"})
    made = runner.invoke(cli, ["--home", str(home), "run", PARAMS, "describe", "--n", "2"])
    assert made.exit_code == 0, made.output
    config.reset()
    db = home / "heddle.db"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    files_before = tree(tmp_path)

    listing = sh(tmp_path, "--home", str(home), "runs", "list", "--json")
    run_id = listing.stdout.split('"id": "')[1].split('"')[0]
    shown = sh(tmp_path, "--home", str(home), "runs", "show", run_id)

    assert listing.returncode == 0, listing.stderr
    assert shown.returncode == 0, shown.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    # A read-only SQLite connection to a WAL database needs its -shm index (and an
    # empty -wal); it cannot delete them on close. Nothing else appears.
    side_files = {"home/heddle.db-shm", "home/heddle.db-wal"}
    assert set(tree(tmp_path)) - side_files == set(files_before)
    assert not (home / "heddle.db-wal").exists() or (home / "heddle.db-wal").stat().st_size == 0


def test_a_read_upgrades_an_older_store_it_finds(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from heddle._store.store import _MIGRATIONS

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    engine.dispose()

    proc = sh(tmp_path, "--db-url", f"sqlite:///{db}", "runs", "list")

    assert proc.returncode == 0, proc.stderr
    assert "no runs" in proc.stdout
    engine = create_engine(f"sqlite:///{db}")
    try:
        assert "run_events" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_an_empty_sqlite_file_is_no_store_and_stays_empty(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    proc = sh(tmp_path, "--db-url", f"sqlite:///{db}", "runs", "list")
    assert proc.returncode == 1
    assert f"no Heddle store at {db}" in proc.stderr
    assert db.stat().st_size == 0


@pytest.mark.postgres
def test_a_postgres_database_without_a_store_is_named_and_left_empty(
    pg_url: str, tmp_path: Path
) -> None:
    proc = sh(tmp_path, "--db-url", pg_url, "runs", "list")
    assert proc.returncode == 1
    shown = pg_url.replace("postgresql+psycopg://", "")
    assert "no Heddle store at postgresql+psycopg://" in proc.stderr
    assert shown.split("@")[-1] in proc.stderr
    engine = create_engine(pg_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert tree(tmp_path) == []


def test_the_api_reads_without_creating_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(heddle.StoreError, match="no Heddle store at"):
        heddle.get_run("r0123456789")
    assert tree(tmp_path) == []
