"""The write path of group commits: statements compiled once per store, the fence
check, and the journal's dedicated connection.

A commit is idempotent: a retry after a failure whose outcome is unknown (the
acknowledgement was lost, the rows may have landed) turns its inserts into upserts.
A fenced commit first checks, in its own transaction, that the run's generation is
still the driver's, so a driver that lost its run to a takeover writes nothing more.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, update

from heddle._errors import RunTakenOverError
from heddle._faults import crashpoint
from heddle._store.records import WriteBatch
from heddle._store.retry import Unavailable, is_transient
from heddle._store.schema import actions, attempts, cache_entries, runs

if TYPE_CHECKING:
    from heddle._store.store import Store

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
        source_run_id=bindparam("source_run_id"),
        source_action_id=bindparam("source_action_id"),
        deps=bindparam("deps"),
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
        started_at=bindparam("started_at"),
        finished_at=bindparam("finished_at"),
        cpu_seconds=bindparam("cpu_seconds"),
        peak_rss=bindparam("peak_rss"),
    )
)
# FOR SHARE (PostgreSQL): a takeover's UPDATE of the run waits for this commit, and
# this commit sees a takeover that committed first. SQLite has one writer at a time,
# so there the check runs after the commit's first write, holding the write lock.
_GENERATION = (
    select(runs.c.generation, runs.c.owner)
    .where(runs.c.id == bindparam("run_id"))
    .with_for_update(read=True)
)


def _insert(dialect_name: str, table: Any, *, upsert: bool) -> Any:
    """A plain insert, or (upsert) one that overwrites a row with the same key."""
    if not upsert:
        return table.insert()
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )


def cache_upsert(dialect_name: str) -> Any:
    # The newest output for a key wins: "override" replaces, and two runs that
    # computed the same key concurrently leave one valid entry.
    return _insert(dialect_name, cache_entries, upsert=True)


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


class Fence:
    """The run a writer's commits belong to, and the generation they must still hold."""

    __slots__ = ("generation", "run_id")

    def __init__(self, run_id: str, generation: int) -> None:
        self.run_id = run_id
        self.generation = generation


class Statements:
    """The write statements of a group commit, compiled once per store."""

    def __init__(self, dialect: Any) -> None:
        name = dialect.name
        self.action_insert = _Compiled(_insert(name, actions, upsert=False), dialect)
        self.attempt_insert = _Compiled(_insert(name, attempts, upsert=False), dialect)
        self.action_upsert = _Compiled(_insert(name, actions, upsert=True), dialect)
        self.attempt_upsert = _Compiled(_insert(name, attempts, upsert=True), dialect)
        self.action_update = _Compiled(_ACTION_UPDATE, dialect)
        self.attempt_update = _Compiled(_ATTEMPT_UPDATE, dialect)
        self.cache_upsert = _Compiled(cache_upsert(name), dialect)
        self.generation = _Compiled(_GENERATION, dialect)
        self.check_first = name == "postgresql"

    def write(
        self, raw: Any, batch: WriteBatch, *, retrying: bool = False, fence: Fence | None = None
    ) -> None:
        """Execute ``batch`` on a DBAPI connection and commit (roll back on error).

        ``retrying``: an earlier try of this batch may have landed, so inserts upsert.
        ``fence``: commit only if the run's generation is still the fence's.
        """
        cur = raw.cursor()
        try:
            if fence is not None and self.check_first:
                self._check(cur, fence)
            for stmt, rows in (
                (self.action_upsert if retrying else self.action_insert, batch.action_inserts),
                (self.attempt_upsert if retrying else self.attempt_insert, batch.attempt_inserts),
                (self.action_update, batch.action_updates),
                (self.attempt_update, batch.attempt_updates),
                (self.cache_upsert, batch.cache_puts),
            ):
                if rows:
                    cur.executemany(stmt.sql, stmt.params(rows))
            if fence is not None and not self.check_first:
                self._check(cur, fence)
            crashpoint("journal.mid_commit")
            raw.commit()
        except BaseException:
            # On a lost connection the rollback fails too; the first error is the one to see.
            with contextlib.suppress(Exception):
                raw.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def _check(self, cur: Any, fence: Fence) -> None:
        cur.execute(self.generation.sql, self.generation.params([{"run_id": fence.run_id}])[0])
        row = cur.fetchone()
        if row is None or row[0] != fence.generation:
            raise RunTakenOverError(
                fence.run_id, None if row is None else row[1], None if row is None else row[0]
            )


class JournalWriter:
    """The runtime's write path: one dedicated connection and pre-compiled statements.

    Group commits are frequent and small (one per loop turn), so this skips
    SQLAlchemy's per-statement compilation and pool checkout and goes straight to
    the DBAPI cursor. On SQLite, checkpoints are left to ``Store.checkpoint()``
    (called off the hot path) instead of running inside a commit. The connection is
    opened on the first write and replaced after it is lost.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._raw: Any = None
        self._sqlite = store.dialect == "sqlite"
        self.fence: Fence | None = None

    def fence_with(self, run_id: str, generation: int) -> None:
        """From now on, each commit first checks that ``run_id`` is still at ``generation``."""
        self.fence = Fence(run_id, generation)

    def _connection(self) -> Any:
        if self._raw is None:
            raw = self._store._engine.raw_connection()
            if self._sqlite:
                cur = raw.cursor()
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()
            self._raw = raw
        return self._raw

    def try_write(self, batch: WriteBatch, *, retrying: bool = False) -> None:
        """One try at committing ``batch``. Raises Unavailable when the failure may pass
        (the connection is then dropped, for a fresh one next time), RunTakenOverError
        when fenced, and StoreError for anything else."""
        if not batch:
            return
        store = self._store
        try:
            with store._write_lock:
                raw = self._connection()
                store._statements.write(raw, batch, retrying=retrying, fence=self.fence)
        except RunTakenOverError:
            raise
        except Exception as exc:
            if is_transient(exc):
                self._drop_connection()
                raise Unavailable(exc) from exc
            error = store._store_error("record actions", exc)
            if error is exc:
                raise
            raise error from exc

    def write(self, batch: WriteBatch, *, retrying: bool = False) -> None:
        """Commit ``batch``, blocking through an outage for as long as the store's retry
        policy allows (then StoreUnavailableError)."""
        self._store.write_with_retry(
            lambda again: self.try_write(batch, retrying=retrying or again),
            "record actions",
        )

    def _drop_connection(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.invalidate()

    def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        with contextlib.suppress(Exception):
            if self._sqlite:
                # The connection goes back to the pool: restore the default.
                cur = raw.cursor()
                cur.execute("PRAGMA wal_autocheckpoint=1000")
                cur.close()
        with contextlib.suppress(Exception):
            raw.close()
