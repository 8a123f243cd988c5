"""Opening a store's database: the engine for its URL, writable or read-only, and
whether a store is there at all.

A store that may be created (``heddle run``) gets its folder made; one that must
already exist (``heddle runs list``, ``heddle recover``) is looked for first, so a
command that only reads never leaves an empty database or folder behind.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from heddle._errors import ConfigError, StoreError, StoreNotFoundError

# A PostgreSQL server that does not answer (a dropped network) must not hang a
# connection attempt for minutes: the retry policy decides how long to keep trying.
PG_CONNECT_TIMEOUT_SECONDS = 10


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"HEDDLE_DB_URL {url!r} is not a database URL: {exc}") from exc


def store_backend(url: str) -> str:
    """The backend a store URL names (sqlite, postgresql), without connecting."""
    return parse_url(url).get_backend_name()


def sqlite_file(parsed: URL) -> Path | None:
    """The database file of a SQLite URL (None for an in-memory database)."""
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def describe(parsed: URL) -> str:
    """Where the store is, for messages: a SQLite file's path, else the URL without password."""
    path = sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None:
        return str(path.resolve())
    return parsed.render_as_string(hide_password=True)


def no_store(parsed: URL) -> StoreNotFoundError:
    return StoreNotFoundError(
        f"no Heddle store at {describe(parsed)} — run something first, or pass --db-url/HEDDLE_HOME"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL + synchronous=NORMAL: a commit survives a crash of the process (kill -9);
    # only an OS crash or power loss can lose the last commits.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_read_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, *, create: bool = True, read_only: bool = False) -> Engine:
    """An engine for ``url``. Unless ``create``, a SQLite file must already exist
    (raises the "no Heddle store" StoreError); ``read_only`` connections cannot write."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed, create=create, read_only=read_only)
    if backend == "postgresql":
        return _pg_engine(url, parsed, read_only=read_only)
    raise ConfigError(f"unsupported store backend {backend!r} in {url!r}: use sqlite or postgresql")


def _sqlite_engine(url: str, parsed: URL, *, create: bool, read_only: bool) -> Engine:
    path = sqlite_file(parsed)
    if path is not None:
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory, not a SQLite file")
        if not path.exists():
            if read_only or not create:
                raise no_store(parsed)
            path.parent.mkdir(parents=True, exist_ok=True)
    if read_only and path is not None:
        # mode=ro: this connection can neither write the database nor create it.
        uri = "file:" + quote(str(path.resolve())) + "?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)

        engine = create_engine(url, creator=connect)
        event.listen(engine, "connect", _sqlite_read_pragmas)
        return engine
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _pg_engine(url: str, parsed: URL, *, read_only: bool) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_SECONDS
    if read_only:
        options = parsed.query.get("options", "")
        if isinstance(options, tuple):
            options = " ".join(options)
        connect_args["options"] = f"{options} -c default_transaction_read_only=on".strip()
    # pre_ping: a pooled connection that died with a server restart is replaced on
    # checkout instead of failing the statement.
    return create_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args
    )
