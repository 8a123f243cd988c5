"""Read-only queries the server needs beyond the Store's own: pages of children,
counts per parent and group, a timeline page. SQLAlchemy Core over the store's tables.

Every query is bounded: a page of rows, or a GROUP BY that returns a few numbers,
so a run with 100,000 actions is never loaded whole.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from heddle._errors import StoreError
from heddle._store import FINAL_STATES, ActionRecord, AttemptRecord, RunRecord, Store
from heddle._store.schema import actions, attempts, runs
from heddle._store.store import action_from_row, attempt_from_row, filter_runs

log = logging.getLogger("heddle.server")

# The columns every attempt has; anything else on the table (resource use added
# later by the executors) is reported as it is.
BASE_ATTEMPT_COLUMNS = frozenset(
    {
        "run_id",
        "action_id",
        "number",
        "status",
        "task_version",
        "worker",
        "error",
        "output",
        "queued_at",
        "started_at",
        "finished_at",
    }
)

LIVE_SHAPE_SECONDS = 1.0
# A live run's shape older than this is never served: the request scans again.
STALE_SHAPE_SECONDS = 5.0
MAX_SHAPES = 16
# Totals of finished runs never change: the runs list keeps many.
MAX_FINISHED_TOTALS = 4096
_STRIPES = 64

# Columns for lists of actions: everything but the (possibly large) values.
_ACTION_LIST_COLUMNS = [c for c in actions.c if c.name not in ("inputs", "output")]


@dataclass(slots=True)
class StatusCounts:
    """How many actions are in each status, plus the special cases the UI marks."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    cached: int = 0
    retried: int = 0
    traces: int = 0

    def add(self, status: str, n: int, cached: int, retried: int, traces: int) -> None:
        self.total += n
        self.by_status[status] = self.by_status.get(status, 0) + n
        self.cached += cached
        self.retried += retried
        self.traces += traces

    def merge(self, other: StatusCounts) -> StatusCounts:
        for status, n in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
        self.total += other.total
        self.cached += other.cached
        self.retried += other.retried
        self.traces += other.traces
        return self


@dataclass(slots=True)
class RunShape:
    """Counts of a run's actions per parent and group, from one scan of the run.

    ``levels[parent][group]`` counts task actions; ``steps[parent]`` counts the
    recorded steps (traces, sleep, now) inside each action.
    """

    levels: dict[str | None, dict[str | None, StatusCounts]] = field(default_factory=dict)
    steps: dict[str | None, StatusCounts] = field(default_factory=dict)
    totals: StatusCounts = field(default_factory=StatusCounts)
    # Changes whenever an action of the run is added or changes status, attempts or
    # times (it hashes counts, attempt sums and latest times per parent, group and
    # status): the version of everything the tree and timeline show.
    fingerprint: str = ""

    def children_of(self, action_id: str) -> StatusCounts:
        out = StatusCounts()
        for counts in self.levels.get(action_id, {}).values():
            out.merge(counts)
        steps = self.steps.get(action_id)
        if steps is not None:
            out.merge(steps)
        return out


@dataclass(frozen=True, slots=True)
class GroupSummary:
    name: str
    counts: StatusCounts


@dataclass(frozen=True, slots=True)
class ChildrenPage:
    groups: list[GroupSummary]
    actions: list[ActionRecord]
    child_counts: dict[str, StatusCounts]
    total: int


class Queries:
    """The server's read path over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[float, tuple[Any, ...], RunShape]] = {}
        # One scan per run at a time: concurrent requests for the same run wait for
        # it instead of each scanning (a page polled by 50 browsers at once).
        self._scanning = [threading.Lock() for _ in range(_STRIPES)]
        self._finished_totals: OrderedDict[str, StatusCounts] = OrderedDict()

    @contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        # The connection is checked (and waited for through a database restart) by
        # the store; a query that loses it midway fails with 503 and is asked again.
        conn = self.store.connection(doing)
        try:
            with conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store: cannot {doing}: {exc}") from exc

    # -- runs ------------------------------------------------------------------------

    def count_runs(
        self, status: str | None = None, task: str | None = None, name: str | None = None
    ) -> int:
        stmt = filter_runs(select(func.count()).select_from(runs), status, task, name)
        with self._read("count runs") as conn:
            return int(conn.execute(stmt).scalar() or 0)

    def run_counts(self, runs_: Sequence[RunRecord]) -> dict[str, StatusCounts]:
        """Per run: actions by status, cache hits, retried actions and traces.

        Finished runs' counts are kept (they never change); the others come from
        one GROUP BY.
        """
        out: dict[str, StatusCounts] = {}
        with self._lock:
            for r in runs_:
                if r.status in FINAL_STATES and r.id in self._finished_totals:
                    out[r.id] = self._finished_totals[r.id]
                    self._finished_totals.move_to_end(r.id)
        missing = [r for r in runs_ if r.id not in out]
        if not missing:
            return out
        stmt = (
            select(actions.c.run_id, actions.c.status, *_count_columns())
            .where(actions.c.run_id.in_([r.id for r in missing]))
            .group_by(actions.c.run_id, actions.c.status)
        )
        fresh: dict[str, StatusCounts] = {}
        with self._read("count actions") as conn:
            for run_id, status, n, cached, retried, traces in conn.execute(stmt):
                fresh.setdefault(run_id, StatusCounts()).add(
                    status, n, int(cached or 0), int(retried or 0), int(traces or 0)
                )
        with self._lock:
            for r in missing:
                counts = fresh.get(r.id, StatusCounts())
                out[r.id] = counts
                # Read after the run row: a run final then was final for this count.
                if r.status in FINAL_STATES:
                    self._finished_totals[r.id] = counts
            while len(self._finished_totals) > MAX_FINISHED_TOTALS:
                self._finished_totals.popitem(last=False)
        return out

    # -- actions ---------------------------------------------------------------------

    def find_action(self, run_id: str, action_id: str) -> ActionRecord | None:
        """The action with this id in the run, or the only one whose id starts with it."""
        with self._read("read an action") as conn:
            row = conn.execute(
                select(actions).where(actions.c.run_id == run_id, actions.c.id == action_id)
            ).first()
            if row is None and 6 <= len(action_id) < 40:
                rows = conn.execute(
                    select(actions)
                    .where(
                        actions.c.run_id == run_id,
                        actions.c.id.startswith(action_id, autoescape=True),
                    )
                    .limit(2)
                ).all()
                row = rows[0] if len(rows) == 1 else None
        return None if row is None else action_from_row(row)

    def shape(self, run: str | RunRecord) -> RunShape:
        """The run's counts per parent and group (one GROUP BY over the run).

        Kept while the run is finished and unchanged. While it is live, a shape is
        fresh for LIVE_SHAPE_SECONDS; after that, requests get it (for up to
        STALE_SHAPE_SECONDS) while one background scan refreshes it, so no poll waits
        for a scan of a run that is being watched. Given the run's record (just
        read), its row is not read again.
        """
        if isinstance(run, RunRecord):
            run_id, fingerprint = run.id, (run.status, run.finished_at)
        else:
            run_id = run
            with self._read("read the run") as conn:
                fingerprint = tuple(
                    conn.execute(
                        select(runs.c.status, runs.c.finished_at).where(runs.c.id == run_id)
                    ).first()
                    or ()
                )
        hit, fresh = self._cached_shape(run_id, fingerprint)
        if hit is not None:
            if not fresh:
                self._refresh_in_background(run_id, fingerprint)
            return hit
        with self._scanning[hash(run_id) % _STRIPES]:
            hit, fresh = self._cached_shape(run_id, fingerprint)
            if hit is not None and fresh:
                return hit
            return self._scan_and_keep(run_id, fingerprint)

    def kept_shape(self, run: RunRecord) -> RunShape | None:
        """The kept shape of ``run`` if it may be served, without any I/O (a stale one
        starts a background scan); None when only a scan can answer."""
        fingerprint = (run.status, run.finished_at)
        hit, fresh = self._cached_shape(run.id, fingerprint)
        if hit is not None and not fresh:
            self._refresh_in_background(run.id, fingerprint)
        return hit

    def _scan_and_keep(self, run_id: str, fingerprint: tuple[Any, ...]) -> RunShape:
        made = time.monotonic()
        shape = self._scan_shape(run_id)
        with self._lock:
            if len(self._shapes) >= MAX_SHAPES and run_id not in self._shapes:
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[run_id] = (made, fingerprint, shape)
        return shape

    def _cached_shape(
        self, run_id: str, fingerprint: tuple[Any, ...]
    ) -> tuple[RunShape | None, bool]:
        """The kept shape if it may be served, and whether it is fresh."""
        with self._lock:
            hit = self._shapes.get(run_id)
        if hit is None:
            return None, False
        made, seen, shape = hit
        if seen != fingerprint:
            return None, False
        if seen and seen[0] in FINAL_STATES:
            return shape, True
        age = time.monotonic() - made
        if age < LIVE_SHAPE_SECONDS:
            return shape, True
        return (shape, False) if age < STALE_SHAPE_SECONDS else (None, False)

    def _refresh_in_background(self, run_id: str, fingerprint: tuple[Any, ...]) -> None:
        lock = self._scanning[hash(run_id) % _STRIPES]
        if not lock.acquire(blocking=False):
            return  # a scan of this run (or one sharing its lock) is under way

        def refresh() -> None:
            try:
                _, fresh = self._cached_shape(run_id, fingerprint)
                if not fresh:
                    self._scan_and_keep(run_id, fingerprint)
            except Exception:  # the next request scans again and reports the error
                log.warning("cannot refresh the counts of run %s", run_id, exc_info=True)
            finally:
                lock.release()

        threading.Thread(target=refresh, name="heddle-shape", daemon=True).start()

    def _scan_shape(self, run_id: str) -> RunShape:
        is_task = actions.c.kind == "task"
        stmt = (
            select(
                actions.c.parent_id,
                actions.c.group_name,
                is_task.label("is_task"),
                actions.c.status,
                *_count_columns(),
                func.sum(actions.c.attempts),
                func.max(actions.c.queued_at),
                func.max(actions.c.started_at),
                func.max(actions.c.finished_at),
            )
            .where(actions.c.run_id == run_id)
            .group_by(actions.c.parent_id, actions.c.group_name, is_task, actions.c.status)
        )
        shape = RunShape()
        digest = hashlib.blake2b(digest_size=16)
        with self._read("count the run's actions") as conn:
            rows = conn.execute(stmt).all()
        # Sorted: the database may group in any order.
        for row in sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r)):
            parent, group, task, status, n, cached, retried, steps, *_ = row
            digest.update(repr((parent, group, bool(task), *row[3:])).encode())
            counts = (
                shape.levels.setdefault(parent, {}).setdefault(group, StatusCounts())
                if task
                else shape.steps.setdefault(parent, StatusCounts())
            )
            for target in (counts, shape.totals):
                target.add(status, n, int(cached or 0), int(retried or 0), int(steps or 0))
        shape.fingerprint = digest.hexdigest()
        return shape

    def children(
        self,
        run_id: str,
        parent_id: str,
        group: str | None,
        offset: int,
        limit: int,
        shape: RunShape | None = None,
    ) -> ChildrenPage:
        """One level of the tree: the parent's direct groups, then a page of its task
        actions that sit directly in ``group`` (None: in no group), in call order."""
        shape = shape or self.shape(run_id)
        level = shape.levels.get(parent_id, {})
        groups = _direct_groups(level, group)
        total = level[group].total if group in level else 0
        in_group = (
            actions.c.group_name.is_(None) if group is None else actions.c.group_name == group
        )
        page: list[ActionRecord] = []
        if total > offset:
            with self._read("read the action tree") as conn:
                rows = conn.execute(
                    select(*_ACTION_LIST_COLUMNS)
                    .where(
                        actions.c.run_id == run_id,
                        actions.c.parent_id == parent_id,
                        actions.c.kind == "task",
                        in_group,
                    )
                    .order_by(actions.c.seq, actions.c.queued_at)
                    .limit(limit)
                    .offset(offset)
                ).all()
            page = [action_from_row(r) for r in rows]
        child_counts = {a: shape.children_of(a) for a in [parent_id, *(p.id for p in page)]}
        return ChildrenPage(groups, page, child_counts, total)

    def timeline(
        self, run_id: str, offset: int, limit: int, parent_id: str | None = None
    ) -> tuple[list[ActionRecord], int]:
        """A page of the run's actions in the order they were queued, and how many there are."""
        where = [actions.c.run_id == run_id]
        if parent_id is not None:
            where.append(actions.c.parent_id == parent_id)
        with self._read("read the timeline") as conn:
            total = int(
                conn.execute(select(func.count()).select_from(actions).where(*where)).scalar() or 0
            )
            rows = conn.execute(
                select(*_ACTION_LIST_COLUMNS)
                .where(*where)
                .order_by(actions.c.queued_at, actions.c.seq)
                .limit(limit)
                .offset(offset)
            ).all()
        return [action_from_row(r) for r in rows], total

    def ancestors(self, run_id: str, action: ActionRecord, limit: int = 50) -> list[ActionRecord]:
        """The chain of parents from the root down to (not including) ``action``."""
        chain: list[ActionRecord] = []
        parent = action.parent_id
        with self._read("read an action's parents") as conn:
            while parent is not None and len(chain) < limit:
                row = conn.execute(
                    select(*_ACTION_LIST_COLUMNS).where(
                        actions.c.run_id == run_id, actions.c.id == parent
                    )
                ).first()
                if row is None:
                    break
                rec = action_from_row(row)
                chain.append(rec)
                parent = rec.parent_id
        chain.reverse()
        return chain

    def steps(
        self, run_id: str, parent_id: str, offset: int, limit: int
    ) -> tuple[list[ActionRecord], int]:
        """The recorded steps (traces, durable sleep/now) inside an action, with their values."""
        where = and_(
            actions.c.run_id == run_id,
            actions.c.parent_id == parent_id,
            actions.c.kind != "task",
        )
        with self._read("read an action's traces") as conn:
            total = int(
                conn.execute(select(func.count()).select_from(actions).where(where)).scalar() or 0
            )
            rows = conn.execute(
                select(actions).where(where).order_by(actions.c.seq).limit(limit).offset(offset)
            ).all()
        return [action_from_row(r) for r in rows], total

    def attempts_of(
        self, run_id: str, action_ids: Sequence[str]
    ) -> dict[str, list[tuple[AttemptRecord, dict[str, Any]]]]:
        """Attempts of these actions, each with the extra (resource) columns it has."""
        if not action_ids:
            return {}
        stmt = (
            select(attempts)
            .where(attempts.c.run_id == run_id, attempts.c.action_id.in_(list(action_ids)))
            .order_by(attempts.c.action_id, attempts.c.number)
        )
        out: dict[str, list[tuple[AttemptRecord, dict[str, Any]]]] = {}
        with self._read("read attempts") as conn:
            for row in conn.execute(stmt):
                m = row._mapping
                rec = attempt_from_row(row)
                extra = {
                    k: v
                    for k, v in m.items()
                    if k not in BASE_ATTEMPT_COLUMNS and isinstance(v, int | float | str)
                }
                out.setdefault(rec.action_id, []).append((rec, extra))
        return out


def _count_columns() -> list[Any]:
    # FILTER is cheaper than SUM(CASE ...) on both SQLite (3.30+) and PostgreSQL.
    return [
        func.count(),
        func.count().filter(actions.c.cached == 1),
        func.count().filter(actions.c.attempts > 1),
        func.count().filter(actions.c.kind != "task"),
    ]


def _direct_groups(level: dict[str | None, StatusCounts], group: str | None) -> list[GroupSummary]:
    """Groups one level below ``group``; deeper groups ("a/b/c") count toward their
    ancestor at this level ("a/b" seen from "a")."""
    prefix = "" if group is None else group + "/"
    found: dict[str, StatusCounts] = {}
    for name, counts in level.items():
        if name is None or name == group or not name.startswith(prefix):
            continue
        key = prefix + name[len(prefix) :].split("/", 1)[0]
        found.setdefault(key, StatusCounts()).merge(counts)
    return [GroupSummary(k, found[k]) for k in sorted(found)]
