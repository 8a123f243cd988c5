"""The store: runs, actions, attempts, cache entries and run events in SQLite or PostgreSQL.

The only module that talks SQL. Writes from the runtime arrive as a WriteBatch and
land in one transaction; reads return frozen records. Every read and write rides out
a lost connection (a database restart) under the store's RetryPolicy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from heddle._errors import (
    HeddleError,
    RunNotFoundError,
    RunTakenOverError,
    StoreError,
    StoreUnavailableError,
)
from heddle._store.engine import describe, make_engine, no_store, parse_url
from heddle._store.records import (
    ActionRecord,
    AttemptRecord,
    CacheEntry,
    RunEventRecord,
    RunRecord,
    WriteBatch,
)
from heddle._store.retry import Outage, RetryPolicy, Unavailable, is_transient
from heddle._store.schema import actions, attempts, cache_entries, run_events, runs
from heddle._store.writes import JournalWriter, Statements

HEAD_REVISION = "0004"
_MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")

# What to do when the database stays unreachable, by default.
_RETRY_HINT = "check that the database is running and reachable, then try again"
# A cache entry's columns in CacheEntry's order.
_CACHE_COLUMNS = tuple(cache_entries.c[name] for name in CacheEntry._fields)


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
        deps=m.get("deps"),
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
    """A handle on one store database. Thread-safe; cheap to keep open.

    ``create``: make the store (folder, database, schema) if it is not there; else a
    missing store raises StoreError naming where it was looked for. ``read_only``:
    connections cannot write (a command that only looks at runs). ``retry``: how long
    a lost database is waited for (default: RetryPolicy.from_env()).
    """

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        read_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self.read_only = read_only
        self.retry = retry or RetryPolicy.from_env()
        self._parsed = parse_url(url)
        self._engine = make_engine(url, create=create and not read_only, read_only=read_only)
        self.dialect = self._engine.dialect.name
        dbapi = self._engine.dialect.dbapi
        self._dbapi_errors: type[Exception] = getattr(dbapi, "Error", SQLAlchemyError)
        self._write_lock = threading.Lock()
        try:
            self._migrate(create=create and not read_only)
        except BaseException:
            self._engine.dispose()
            raise
        self._statements = Statements(self._engine.dialect)

    # -- lifecycle -----------------------------------------------------------------

    def _describe(self) -> str:
        return describe(self._parsed)

    def _store_error(self, doing: str, exc: BaseException) -> BaseException:
        """The error to raise for ``exc``: a StoreError naming the store and what failed
        (HeddleErrors and errors that are not the database's pass through unchanged)."""
        if isinstance(exc, HeddleError):
            return exc
        if isinstance(exc, Unavailable):
            exc = exc.error
        if isinstance(exc, (OperationalError, DBAPIError)):
            return StoreError(f"store {self._describe()}: cannot {doing}: {exc.orig}")
        if isinstance(exc, (SQLAlchemyError, self._dbapi_errors)):
            # The journal writer talks to the DBAPI connection directly.
            return StoreError(f"store {self._describe()}: cannot {doing}: {exc}")
        return exc

    def unreachable(self, doing: str, last: BaseException, outage: Outage, hint: str) -> StoreError:
        """The error for giving up on an outage: names the store, how long it was tried
        and the last failure, and says what to do."""
        cause = last.error if isinstance(last, Unavailable) else last
        if isinstance(cause, DBAPIError) and cause.orig is not None:
            cause = cause.orig
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return StoreUnavailableError(
            f"store {self._describe()}: cannot {doing}: the database has been unreachable "
            f"for {outage.elapsed:.0f}s ({outage.tries} tries; last: {reason}); {hint} "
            f"(HEDDLE_STORE_OUTAGE_SECONDS sets how long Heddle waits)"
        )

    def write_with_retry(
        self,
        attempt: Callable[[bool], T],
        doing: str,
        hint: str = _RETRY_HINT,
        policy: RetryPolicy | None = None,
    ) -> T:
        """``attempt(retrying)`` under the retry policy; errors become StoreErrors."""
        try:
            return (policy or self.retry).call(
                attempt, give_up=lambda last, outage: self.unreachable(doing, last, outage, hint)
            )
        except Exception as exc:
            error = self._store_error(doing, exc)
            if error is exc:
                raise
            raise error from exc

    def connection(self, doing: str) -> Connection:
        """A live connection (the caller closes it), waited for through an outage."""
        return self.write_with_retry(lambda _retrying: self._engine.connect(), doing)

    def _read(self, doing: str, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a connection, again on a fresh one if the first was lost."""

        def attempt(_retrying: bool) -> T:
            with self._engine.connect() as conn:
                return fn(conn)

        return self.write_with_retry(attempt, doing)

    def _write(self, doing: str, fn: Callable[[Connection, bool], T]) -> T:
        """Run ``fn(conn, retrying)`` in one transaction, retried on a lost connection;
        ``retrying`` says an earlier try may have landed (``fn`` must then not fail on it)."""

        def attempt(retrying: bool) -> T:
            with self._write_lock, self._engine.begin() as conn:
                return fn(conn, retrying)

        return self.write_with_retry(attempt, doing)

    def _migrate(self, *, create: bool) -> None:
        def revision(conn: Connection) -> str | None:
            if inspect(conn).has_table("alembic_version"):
                return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar())
            if inspect(conn).has_table("runs"):
                raise StoreError(
                    f"store {self._describe()} has a 'runs' table but no migration history: "
                    "it was not made by Heddle"
                )
            return None

        def read_revision(_retrying: bool) -> str | None:
            with self._engine.connect() as conn:
                return revision(conn)

        # A database that never answered this process is more likely a wrong URL than
        # a restart: give up on it sooner than on one that went away mid-run.
        current = self.write_with_retry(
            read_revision,
            "open the store (is it a Heddle store?)",
            "check the database URL and that the database is running",
            self.retry.for_opening(),
        )
        if current == HEAD_REVISION:
            return
        if current is None and not create:
            raise no_store(self._parsed)
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        # A read-only handle on an older store upgrades it through a writable engine:
        # the store is there, and every open upgrades it.
        engine = make_engine(self.url) if self.read_only else self._engine

        def upgrade(_retrying: bool) -> None:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

        try:
            self.write_with_retry(upgrade, "migrate the store schema")
        finally:
            if engine is not self._engine:
                engine.dispose()

    def close(self) -> None:
        self._engine.dispose()

    # -- runs ----------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        row = {f: getattr(run, f) for f in RunRecord.__slots__}
        row["abort_requested"] = int(run.abort_requested)

        def write(conn: Connection, retrying: bool) -> None:
            if retrying and conn.execute(select(runs.c.id).where(runs.c.id == run.id)).first():
                return  # the first try landed; its acknowledgement was lost
            conn.execute(runs.insert(), row)

        self._write("record the run", write)

    def update_run(self, run_id: str, *, generation: int | None = None, **values: Any) -> None:
        """Set these columns of the run. With ``generation``, only while the run is still
        at that generation: a driver that was taken over gets RunTakenOverError."""
        stmt = update(runs).where(runs.c.id == run_id).values(**values)
        if generation is not None:
            stmt = stmt.where(runs.c.generation == generation)

        def write(conn: Connection, _retrying: bool) -> Any:
            if conn.execute(stmt).rowcount == 1 or generation is None:
                return None
            # Fenced, or the run is gone: say which.
            row = conn.execute(
                select(runs.c.owner, runs.c.generation).where(runs.c.id == run_id)
            ).first()
            return False if row is None else row

        taken = self._write("update the run", write)
        if taken is False:
            raise RunNotFoundError(run_id)
        if taken is not None:
            raise RunTakenOverError(run_id, taken.owner, taken.generation)

    def claim_run(self, run_id: str, owner: str, generation: int, note: str) -> int | None:
        """Make ``owner`` the run's driver if nobody took it since we saw ``generation``.

        Bumps the generation (fencing the previous driver's writes), clears a pending
        abort and the old error, and records a "recovered" run event with ``note``, all
        in one transaction. Returns the new generation, or None if another process
        claimed the run first.
        """
        new = generation + 1
        now = time.time()

        def write(conn: Connection, retrying: bool) -> bool:
            if retrying:
                row = conn.execute(
                    select(runs.c.owner, runs.c.generation).where(runs.c.id == run_id)
                ).first()
                if row is not None and row.owner == owner and row.generation == new:
                    return True  # the first try landed; its acknowledgement was lost
            claimed = conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .where(runs.c.generation == generation)
                .values(
                    owner=owner,
                    generation=new,
                    heartbeat_at=now,
                    status="running",
                    finished_at=None,
                    abort_requested=0,
                    error=None,
                )
            )
            if claimed.rowcount != 1:
                return False
            conn.execute(
                run_events.insert().values(
                    run_id=run_id, at=now, kind="recovered", action_id=None, message=note
                )
            )
            return True

        return new if self._write("claim the run", write) else None

    def mark_aborted(self, run_id: str, error: str) -> None:
        """Abort a run whose driver is gone: the run and its unfinished actions.

        Bumps the generation too, so a driver that only looked gone writes nothing more.
        """
        now = time.time()
        unfinished = ("queued", "running")

        def write(conn: Connection, _retrying: bool) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="aborted",
                    error=error,
                    finished_at=now,
                    heartbeat_at=None,
                    generation=runs.c.generation + 1,
                )
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

        self._write("abort the run", write)

    def close_unfinished(self, run_id: str, error: str, generation: int | None = None) -> int:
        """Mark the run's actions (and attempts) still queued or running as aborted: the
        run has ended and nothing will finish them. Returns how many actions. With
        ``generation``, only while the run is still at that generation (a driver that was
        taken over must not close what the new one runs)."""
        now = time.time()
        unfinished = ("queued", "running")

        def write(conn: Connection, _retrying: bool) -> int:
            if generation is not None:
                current = conn.execute(
                    select(runs.c.generation).where(runs.c.id == run_id)
                ).scalar()
                if current != generation:
                    return 0
            n = conn.execute(
                update(actions)
                .where(actions.c.run_id == run_id)
                .where(actions.c.status.in_(unfinished))
                .values(status="aborted", error=error, finished_at=now)
            ).rowcount
            conn.execute(
                update(attempts)
                .where(attempts.c.run_id == run_id)
                .where(attempts.c.status.in_(unfinished))
                .values(status="aborted", error=error, finished_at=now)
            )
            return int(n)

        return self._write("close the run's unfinished actions", write)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or the only run whose id starts with it."""

        def read(conn: Connection) -> RunRecord:
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

        return self._read("read runs", read)

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
        return self._read("list runs", lambda conn: [_row_to_run(r) for r in conn.execute(stmt)])

    # -- actions -------------------------------------------------------------------

    def write_batch(self, batch: WriteBatch) -> None:
        """Write everything in ``batch`` in one transaction (group commit)."""
        if not batch:
            return

        def attempt(retrying: bool) -> None:
            raw = self._engine.raw_connection()
            try:
                with self._write_lock:
                    self._statements.write(raw, batch, retrying=retrying)
            except Exception as exc:
                if is_transient(exc):
                    raw.invalidate()  # lost: the pool must not hand it out again
                raise
            finally:
                raw.close()

        self.write_with_retry(attempt, "record actions")

    def writer(self) -> JournalWriter:
        """A dedicated write path for one run's journal."""
        return JournalWriter(self)

    def checkpoint(self) -> None:
        """Move the SQLite write-ahead log into the database file (no-op elsewhere)."""
        if self.dialect != "sqlite" or self.read_only:
            return

        def run(_retrying: bool) -> None:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

        self.write_with_retry(run, "checkpoint the store")

    def actions_of_run(self, run_id: str) -> list[ActionRecord]:
        stmt = select(actions).where(actions.c.run_id == run_id).order_by(actions.c.queued_at)
        return self._read("read actions", lambda c: [action_from_row(r) for r in c.execute(stmt)])

    def actions_of_parent(self, run_id: str, parent_id: str) -> list[ActionRecord]:
        """The children an action has called (tasks and recorded steps)."""
        stmt = (
            select(actions)
            .where(actions.c.run_id == run_id)
            .where(actions.c.parent_id == parent_id)
            .order_by(actions.c.seq)
        )
        return self._read("read actions", lambda c: [action_from_row(r) for r in c.execute(stmt)])

    def get_action(self, action_id: str, run_id: str | None = None) -> ActionRecord | None:
        """One action; pass its run id too for a primary-key lookup."""
        stmt = select(actions).where(actions.c.id == action_id)
        if run_id is not None:
            stmt = stmt.where(actions.c.run_id == run_id)

        def read(conn: Connection) -> ActionRecord | None:
            row = conn.execute(stmt).first()
            return None if row is None else action_from_row(row)

        return self._read("read an action", read)

    def attempts_of_run(self, run_id: str) -> list[AttemptRecord]:
        stmt = (
            select(attempts)
            .where(attempts.c.run_id == run_id)
            .order_by(attempts.c.action_id, attempts.c.number)
        )
        return self._read("read attempts", lambda c: [attempt_from_row(r) for r in c.execute(stmt)])

    def count_actions(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per run, the number of actions in each status."""
        if not run_ids:
            return {}
        stmt = (
            select(actions.c.run_id, actions.c.status, func.count())
            .where(actions.c.run_id.in_(list(run_ids)))
            .group_by(actions.c.run_id, actions.c.status)
        )

        def read(conn: Connection) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for run_id, status, n in conn.execute(stmt):
                out.setdefault(run_id, {})[status] = n
            return out

        return self._read("count actions", read)

    # -- run events ----------------------------------------------------------------

    def add_run_event(
        self, run_id: str, kind: str, message: str, action_id: str | None = None
    ) -> None:
        """Record something that happened to a run (rare: written at once, not batched)."""
        row = {
            "run_id": run_id,
            "at": time.time(),
            "kind": str(kind),
            "action_id": action_id,
            "message": message,
        }

        def write(conn: Connection, _retrying: bool) -> None:
            conn.execute(run_events.insert(), row)

        self._write("record a run event", write)

    def run_events(self, run_id: str) -> list[RunEventRecord]:
        """A run's events, oldest first."""
        stmt = select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)

        def read(conn: Connection) -> list[RunEventRecord]:
            return [
                RunEventRecord(
                    id=m["id"],
                    run_id=m["run_id"],
                    at=m["at"],
                    kind=m["kind"],
                    action_id=m["action_id"],
                    message=m["message"],
                )
                for m in (r._mapping for r in conn.execute(stmt))
            ]

        return self._read("read run events", read)

    # -- cache ---------------------------------------------------------------------

    def cache_get(self, key: str) -> bytes | None:
        stmt = select(cache_entries.c.output).where(cache_entries.c.key == key)

        def read(conn: Connection) -> bytes | None:
            value = conn.execute(stmt).scalar()
            return None if value is None else bytes(value)

        return self._read("read the cache", read)

    def cache_get_many(self, keys: list[str]) -> dict[str, CacheEntry]:
        """The entries of those keys that are in the cache."""

        def read(conn: Connection) -> dict[str, CacheEntry]:
            out: dict[str, CacheEntry] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                stmt = select(*_CACHE_COLUMNS).where(cache_entries.c.key.in_(chunk))
                for key, name, output, run_id, action_id, created_at, deps in conn.execute(stmt):
                    out[key] = CacheEntry(
                        key, name, bytes(output), run_id, action_id, created_at, deps
                    )
            return out

        return self._read("read the cache", read)

    def cache_tasks(self) -> list[tuple[str, int, float]]:
        """Per task with cache entries: its name, how many, and when the newest was made."""
        stmt = (
            select(
                cache_entries.c.task_name,
                func.count(),
                func.max(cache_entries.c.created_at),
            )
            .group_by(cache_entries.c.task_name)
            .order_by(cache_entries.c.task_name)
        )

        def read(conn: Connection) -> list[tuple[str, int, float]]:
            return [(name, int(n), float(newest)) for name, n, newest in conn.execute(stmt)]

        return self._read("read the cache", read)

    def cache_entries_of(self, task_name: str, limit: int = 50) -> list[CacheEntry]:
        """A task's cache entries, newest first (outputs left out)."""
        stmt = (
            select(*(c for c in cache_entries.c if c.name != "output"))
            .where(cache_entries.c.task_name == task_name)
            .order_by(cache_entries.c.created_at.desc())
            .limit(limit)
        )

        def read(conn: Connection) -> list[CacheEntry]:
            return [_cache_entry(r) for r in conn.execute(stmt)]

        return self._read("read the cache", read)

    def cache_delete(self, key: str) -> None:
        """Forget one cached output (its blobs were lost: it must be computed again)."""

        def write(conn: Connection, _retrying: bool) -> None:
            conn.execute(cache_entries.delete().where(cache_entries.c.key == key))

        self._write("update the cache", write)

    def cache_clear(self, task_name: str | None = None) -> int:
        """Remove every cache entry, or a task's; returns how many were removed."""
        stmt = cache_entries.delete()
        if task_name is not None:
            stmt = stmt.where(cache_entries.c.task_name == task_name)
        return self._write("clear the cache", lambda conn, _r: int(conn.execute(stmt).rowcount))


def _cache_entry(row: Any) -> CacheEntry:
    m = row._mapping
    output = m.get("output")
    return CacheEntry(
        key=m["key"],
        task_name=m["task_name"],
        output=b"" if output is None else bytes(output),
        run_id=m["run_id"],
        action_id=m["action_id"],
        created_at=m["created_at"],
        deps=m["deps"],
    )


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
