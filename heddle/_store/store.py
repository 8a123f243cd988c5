"""The store: runs, actions, attempts and cache entries in SQLite or PostgreSQL.

The only module that talks SQL. Writes from the runtime arrive as a WriteBatch and
land in one transaction; reads return frozen records.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from heddle._errors import ConfigError, HeddleError, RunNotFoundError, StoreError
from heddle._faults import crashpoint
from heddle._store.records import (
    ActionRecord,
    AttemptRecord,
    RunRecord,
    WriteBatch,
)
from heddle._store.schema import actions, attempts, cache_entries, runs

HEAD_REVISION = "0003"
_MIGRATIONS = Path(__file__).parent / "migrations"

_ACTION_UPDATE = (
    update(actions)
    .where(actions.c.run_id == bindparam("_run_id"))
    .where(actions.c.id == bindparam("_id"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        task_version=bindparam("task_version"),
        cached=bindparam("cached"),
        cache_key=bindparam("cache_key"),
        output=bindparam("output"),
        error=bindparam("error"),
        started_at=bindparam("started_at"),
        finished_at=bindparam("finished_at"),
    )
)
_ATTEMPT_UPDATE = (
    update(attempts)
    .where(attempts.c.run_id == bindparam("_run_id"))
    .where(attempts.c.action_id == bindparam("_action_id"))
    .where(attempts.c.number == bindparam("_number"))
    .values(
        status=bindparam("status"),
        worker=bindparam("worker"),
        error=bindparam("error"),
        output=bindparam("output"),
        finished_at=bindparam("finished_at"),
        cpu_seconds=bindparam("cpu_seconds"),
        peak_rss=bindparam("peak_rss"),
    )
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL + synchronous=NORMAL: a commit survives a crash of the process (kill -9);
    # only an OS crash or power loss can lose the last commits.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"HEDDLE_DB_URL {url!r} is not a database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if path.exists() and path.is_dir():
                raise StoreError(f"store path {path} is a directory, not a SQLite file")
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ConfigError(f"unsupported store backend {backend!r} in {url!r}: use sqlite or postgresql")


def _row_to_run(row: Any) -> RunRecord:
    m = row._mapping
    return RunRecord(
        id=m["id"],
        name=m["name"],
        root_task=m["root_task"],
        root_action_id=m["root_action_id"],
        status=m["status"],
        program=m["program"],
        inputs=bytes(m["inputs"]),
        output=None if m["output"] is None else bytes(m["output"]),
        error=m["error"],
        executor=m["executor"],
        owner=m["owner"],
        heartbeat_at=m["heartbeat_at"],
        abort_requested=bool(m["abort_requested"]),
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        generation=m.get("generation") or 0,
    )


def action_from_row(row: Any) -> ActionRecord:
    """An ActionRecord from a row of ``actions``; a query may leave out the large
    ``inputs`` and ``output`` columns, which then read as None."""
    m = row._mapping
    inputs = m.get("inputs")
    output = m.get("output")
    return ActionRecord(
        id=m["id"],
        run_id=m["run_id"],
        parent_id=m["parent_id"],
        seq=m["seq"],
        kind=m["kind"],
        task_name=m["task_name"],
        task_version=m["task_version"],
        group_name=m["group_name"],
        status=m["status"],
        attempts=m["attempts"],
        cached=bool(m["cached"]),
        cache_key=m["cache_key"],
        inputs=None if inputs is None else bytes(inputs),
        output=None if output is None else bytes(output),
        error=m["error"],
        queued_at=m["queued_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        source_run_id=m.get("source_run_id"),
        source_action_id=m.get("source_action_id"),
    )


def attempt_from_row(row: Any) -> AttemptRecord:
    """An AttemptRecord from a row of ``attempts``; a query may leave out ``output``
    (large) and the usage columns, which then read as None."""
    m = row._mapping
    output = m.get("output")
    return AttemptRecord(
        action_id=m["action_id"],
        number=m["number"],
        run_id=m["run_id"],
        status=m["status"],
        task_version=m["task_version"],
        worker=m["worker"],
        error=m["error"],
        output=None if output is None else bytes(output),
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        cpu_seconds=m.get("cpu_seconds"),
        peak_rss=m.get("peak_rss"),
        queued_at=m.get("queued_at"),
    )


class Store:
    """A handle on one store database. Thread-safe; cheap to keep open."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _make_engine(url)
        self.dialect = self._engine.dialect.name
        dbapi = self._engine.dialect.dbapi
        self._dbapi_errors: type[Exception] = getattr(dbapi, "Error", SQLAlchemyError)
        self._write_lock = threading.Lock()
        self._migrate()
        self._statements = _Statements(self)

    # -- lifecycle -----------------------------------------------------------------

    def _describe(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            error = self._store_error(doing, exc)
            if error is exc:
                raise
            raise error from exc

    def _store_error(self, doing: str, exc: Exception) -> Exception:
        """The error to raise for ``exc``: a StoreError naming the store and what failed
        (HeddleErrors and errors that are not the database's pass through unchanged)."""
        if isinstance(exc, HeddleError):
            return exc
        if isinstance(exc, (OperationalError, DBAPIError)):
            return StoreError(f"store {self._describe()}: cannot {doing}: {exc.orig}")
        if isinstance(exc, (SQLAlchemyError, self._dbapi_errors)):
            # The journal writer talks to the DBAPI connection directly.
            return StoreError(f"store {self._describe()}: cannot {doing}: {exc}")
        return exc

    def _migrate(self) -> None:
        with self._errors("open the store (is it a Heddle store?)"), self._engine.connect() as conn:
            current = None
            if inspect(conn).has_table("alembic_version"):
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            elif inspect(conn).has_table("runs"):
                raise StoreError(
                    f"store {self._describe()} has a 'runs' table but no migration history: "
                    "it was not made by Heddle"
                )
        if current == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self._errors("migrate the store schema"), self._engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _write(self, doing: str) -> Iterator[Connection]:
        with self._errors(doing), self._write_lock, self._engine.begin() as conn:
            yield conn

    # -- runs ----------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        row = {f: getattr(run, f) for f in RunRecord.__slots__}
        row["abort_requested"] = int(run.abort_requested)
        with self._write("record the run") as conn:
            conn.execute(runs.insert(), row)

    def update_run(self, run_id: str, **values: Any) -> None:
        with self._write("update the run") as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    def claim_run(self, run_id: str, owner: str, previous_owner: str | None) -> bool:
        """Make ``owner`` the run's driver if nobody else took it since we looked."""
        now = time.time()
        stmt = update(runs).where(runs.c.id == run_id)
        if previous_owner is None:
            stmt = stmt.where(runs.c.owner.is_(None))
        else:
            stmt = stmt.where(runs.c.owner == previous_owner)
        with self._write("claim the run") as conn:
            result = conn.execute(
                stmt.values(owner=owner, heartbeat_at=now, status="running", finished_at=None)
            )
            return bool(result.rowcount == 1)

    def mark_aborted(self, run_id: str, error: str) -> None:
        """Abort a run whose driver is gone: the run and its unfinished actions."""
        now = time.time()
        unfinished = ("queued", "running")
        with self._write("abort the run") as conn:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status="aborted", error=error, finished_at=now, heartbeat_at=None)
            )
            conn.execute(
                update(actions)
                .where(actions.c.run_id == run_id)
                .where(actions.c.status.in_(unfinished))
                .values(status="aborted", finished_at=now)
            )
            conn.execute(
                update(attempts)
                .where(attempts.c.run_id == run_id)
                .where(attempts.c.status.in_(unfinished))
                .values(status="aborted", finished_at=now)
            )

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it."""
        with self._errors("read runs"), self._engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
            if row is not None:
                return _row_to_run(row)
            if len(run_id) >= 4:
                rows = conn.execute(
                    select(runs).where(runs.c.id.startswith(run_id, autoescape=True)).limit(2)
                ).all()
                if len(rows) == 1:
                    return _row_to_run(rows[0])
                if len(rows) > 1:
                    raise HeddleError(f"run id prefix {run_id!r} matches several runs")
        raise RunNotFoundError(run_id)

    def list_runs(
        self,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        task: str | None = None,
        name: str | None = None,
    ) -> list[RunRecord]:
        stmt = select(runs).order_by(runs.c.created_at.desc()).limit(limit).offset(offset)
        stmt = filter_runs(stmt, status, task, name)
        with self._errors("list runs"), self._engine.connect() as conn:
            return [_row_to_run(r) for r in conn.execute(stmt)]

    # -- actions -------------------------------------------------------------------

    def write_batch(self, batch: WriteBatch) -> None:
        """Write everything in ``batch`` in one transaction (group commit)."""
        if not batch:
            return
        raw = self._engine.raw_connection()
        try:
            with self._errors("record actions"), self._write_lock:
                self._statements.write(raw, batch)
        finally:
            raw.close()

    def writer(self) -> JournalWriter:
        """A dedicated write path for one run's journal."""
        return JournalWriter(self)

    def checkpoint(self) -> None:
        """Move the SQLite write-ahead log into the database file (no-op elsewhere)."""
        if self.dialect != "sqlite":
            return
        with self._errors("checkpoint the store"), self._engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _cache_upsert(self) -> Any:
        # The newest output for a key wins: "override" replaces, and two runs that
        # computed the same key concurrently leave one valid entry.
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(cache_entries)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(cache_entries)
        return stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                c: stmt.excluded[c] for c in ("output", "run_id", "action_id", "created_at", "deps")
            },
        )

    def actions_of_run(self, run_id: str) -> list[ActionRecord]:
        stmt = select(actions).where(actions.c.run_id == run_id).order_by(actions.c.queued_at)
        with self._errors("read actions"), self._engine.connect() as conn:
            return [action_from_row(r) for r in conn.execute(stmt)]

    def actions_of_parent(self, run_id: str, parent_id: str) -> list[ActionRecord]:
        """The children an action has called (tasks and recorded steps)."""
        stmt = (
            select(actions)
            .where(actions.c.run_id == run_id)
            .where(actions.c.parent_id == parent_id)
            .order_by(actions.c.seq)
        )
        with self._errors("read actions"), self._engine.connect() as conn:
            return [action_from_row(r) for r in conn.execute(stmt)]

    def get_action(self, action_id: str, run_id: str | None = None) -> ActionRecord | None:
        """One action; pass its run id too for a primary-key lookup."""
        stmt = select(actions).where(actions.c.id == action_id)
        if run_id is not None:
            stmt = stmt.where(actions.c.run_id == run_id)
        with self._errors("read an action"), self._engine.connect() as conn:
            row = conn.execute(stmt).first()
            return None if row is None else action_from_row(row)

    def attempts_of_run(self, run_id: str) -> list[AttemptRecord]:
        stmt = (
            select(attempts)
            .where(attempts.c.run_id == run_id)
            .order_by(attempts.c.action_id, attempts.c.number)
        )
        with self._errors("read attempts"), self._engine.connect() as conn:
            return [attempt_from_row(r) for r in conn.execute(stmt)]

    def count_actions(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per run, the number of actions in each status."""
        if not run_ids:
            return {}
        stmt = (
            select(actions.c.run_id, actions.c.status, func.count())
            .where(actions.c.run_id.in_(list(run_ids)))
            .group_by(actions.c.run_id, actions.c.status)
        )
        out: dict[str, dict[str, int]] = {}
        with self._errors("count actions"), self._engine.connect() as conn:
            for run_id, status, n in conn.execute(stmt):
                out.setdefault(run_id, {})[status] = n
        return out

    # -- cache ---------------------------------------------------------------------

    def cache_get(self, key: str) -> bytes | None:
        stmt = select(cache_entries.c.output).where(cache_entries.c.key == key)
        with self._errors("read the cache"), self._engine.connect() as conn:
            value = conn.execute(stmt).scalar()
            return None if value is None else bytes(value)

    def cache_get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The stored outputs of those keys that are in the cache."""
        out: dict[str, bytes] = {}
        with self._errors("read the cache"), self._engine.connect() as conn:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                stmt = select(cache_entries.c.key, cache_entries.c.output).where(
                    cache_entries.c.key.in_(chunk)
                )
                for key, output in conn.execute(stmt):
                    out[key] = bytes(output)
        return out

    def cache_clear(self, task_name: str | None = None) -> int:
        stmt = cache_entries.delete()
        if task_name is not None:
            stmt = stmt.where(cache_entries.c.task_name == task_name)
        with self._write("clear the cache") as conn:
            return int(conn.execute(stmt).rowcount)


def filter_runs(
    stmt: Select[Any], status: str | None, task: str | None, name: str | None
) -> Select[Any]:
    """Keep the runs with this status, and whose root task and name contain these."""
    if status:
        stmt = stmt.where(runs.c.status == status)
    if task:
        stmt = stmt.where(runs.c.root_task.contains(task, autoescape=True))
    if name:
        stmt = stmt.where(runs.c.name.contains(name, autoescape=True))
    return stmt


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


class _Compiled:
    """A statement compiled once for the dialect, with its parameter order.

    Rows may be dicts keyed by parameter name, or objects whose attributes are
    named like the columns (update keys ``_id`` etc. map to ``id``): the runtime
    hands its state objects over as they are, and C-level getters build the tuples.
    """

    def __init__(self, stmt: Any, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        self.names: tuple[str, ...] = (
            tuple(compiled.positiontup) if compiled.positional else tuple(compiled.params)
        )
        self._attrs: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(
            *(n.lstrip("_") for n in self.names)
        )

    def params(self, rows: list[Any]) -> list[Any]:
        if isinstance(rows[0], dict):
            # Dict rows may leave out nullable columns (added by later migrations).
            names = self.names
            if not self.positional:
                return [{n: r.get(n) for n in names} for r in rows]
            return [tuple(r.get(n) for n in names) for r in rows]
        get = self._attrs
        if not self.positional:
            names = self.names
            return [dict(zip(names, get(r), strict=True)) for r in rows]
        return [get(r) for r in rows]


class _Statements:
    """The write statements of a group commit, compiled once per store."""

    def __init__(self, store: Store) -> None:
        dialect = store._engine.dialect
        self.action_insert = _Compiled(actions.insert(), dialect)
        self.attempt_insert = _Compiled(attempts.insert(), dialect)
        self.action_update = _Compiled(_ACTION_UPDATE, dialect)
        self.attempt_update = _Compiled(_ATTEMPT_UPDATE, dialect)
        self.cache_upsert = _Compiled(store._cache_upsert(), dialect)

    def write(self, raw: Any, batch: WriteBatch) -> None:
        """Execute ``batch`` on a DBAPI connection and commit (roll back on error)."""
        cur = raw.cursor()
        try:
            for stmt, rows in (
                (self.action_insert, batch.action_inserts),
                (self.attempt_insert, batch.attempt_inserts),
                (self.action_update, batch.action_updates),
                (self.attempt_update, batch.attempt_updates),
                (self.cache_upsert, batch.cache_puts),
            ):
                if rows:
                    cur.executemany(stmt.sql, stmt.params(rows))
            crashpoint("journal.mid_commit")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            cur.close()


class JournalWriter:
    """The runtime's write path: one dedicated connection and pre-compiled statements.

    Group commits are frequent and small (one per loop turn), so this skips
    SQLAlchemy's per-statement compilation and pool checkout and goes straight to
    the DBAPI cursor. On SQLite, checkpoints are left to ``Store.checkpoint()``
    (called off the hot path) instead of running inside a commit.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._raw = store._engine.raw_connection()
        self._sqlite = store.dialect == "sqlite"
        if self._sqlite:
            self._pragma("PRAGMA wal_autocheckpoint=0")

    def _pragma(self, sql: str) -> None:
        cur = self._raw.cursor()
        cur.execute(sql)
        cur.close()

    def write(self, batch: WriteBatch) -> None:
        if not batch:
            return
        store = self._store
        try:
            with store._write_lock:
                store._statements.write(self._raw, batch)
        except Exception as exc:
            error = store._store_error("record actions", exc)
            if error is exc:
                raise
            raise error from exc

    def close(self) -> None:
        if self._sqlite:
            # The connection goes back to the pool: restore the default.
            self._pragma("PRAGMA wal_autocheckpoint=1000")
        self._raw.close()
