"""What every request handler needs: the session (store and storage), the server's
queries, its auth, and helpers that turn records into API bodies."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
from fastapi import Request

from heddle._runtime.driver import owner_alive
from heddle._sdk.config import Session
from heddle._store import FINAL_STATES, ActionRecord, AttemptRecord, RunRecord
from heddle.server import values
from heddle.server.api import models
from heddle.server.auth import Auth
from heddle.server.conditional import Bodies
from heddle.server.queries import Queries, StatusCounts
from heddle.server.recovery import Recoveries, Recovery

ORPHANED = "orphaned"
RECOVERING = "recovering"
# Threads for the blocking work of the polled endpoints (run, tree, timeline). More
# would only contend for the GIL and the store's few pooled connections; the other
# endpoints (downloads, abort) keep the default pool, so they never starve polls.
POLL_THREADS = 4
T = TypeVar("T")


class ServerState:
    """The server's session, opened on first use: a server started before anything
    ran answers 503 ("no Heddle store at ...") until a run creates the store, and
    never creates it itself."""

    def __init__(
        self,
        open_session: Callable[[], Session],
        auth: Auth,
        backend: str,
        recoveries: Recoveries,
        bodies: Bodies,
    ) -> None:
        self._open = open_session
        self.auth = auth
        self.backend = backend  # sqlite or postgresql, known before the store exists
        self.recoveries = recoveries
        self.bodies = bodies
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._queries: Queries | None = None
        self._poll_limiter: anyio.CapacityLimiter | None = None

    def _opened(self) -> tuple[Session, Queries]:
        with self._lock:
            if self._session is None or self._queries is None:
                session = self._open()
                self._queries = Queries(session.store)
                self._session = session
            return self._session, self._queries

    @property
    def session(self) -> Session:
        return self._opened()[0]

    @property
    def queries(self) -> Queries:
        return self._opened()[1]

    async def in_poll_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on one of the polled endpoints' threads."""
        if self._poll_limiter is None:  # made in the event loop, on first use
            self._poll_limiter = anyio.CapacityLimiter(POLL_THREADS)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._poll_limiter)

    def blob_link(self, key: str, name: str | None) -> str:
        url = f"/api/v1/blobs/{quote(key)}?{self.auth.sign('blob:' + key)}"
        return url + (f"&name={quote(name)}" if name else "")

    def report_link(self, run_id: str, action_id: str) -> str:
        subject = f"report:{run_id}/{action_id}"
        return f"/api/v1/runs/{run_id}/actions/{action_id}/report/html?{self.auth.sign(subject)}"

    def value(self, literal: bytes | None) -> dict[str, Any]:
        return values.view_of_literal(self.session.literals, literal, self.blob_link)

    def inputs(self, literal: bytes | None, names: list[str] | None) -> list[models.Value]:
        views = values.input_views(self.session.literals, literal, self.blob_link, names)
        return [models.Value(name=v["name"], value=v["value"]) for v in views]


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.heddle
    return state


async def get_state(request: Request) -> ServerState:
    """The dependency: async, since it does no I/O and a sync dependency costs a hop
    to the thread pool on every request."""
    return state_of(request)


def duration(start: float | None, end: float | None) -> float | None:
    """Seconds from start to end, once both are known.

    Nothing here depends on the clock, so a body stays valid (and cacheable) until
    the store changes; the UI counts a live run's time up itself.
    """
    if start is None or end is None:
        return None
    return max(0.0, end - start)


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether a live run's driver still runs, and this server's recovery of it."""

    driver_alive: bool | None
    display_status: str
    recovery: Recovery | None


def liveness(r: RunRecord, recovery: Recovery | None) -> Liveness:
    # A recovery this server started and whose process has not claimed the run yet.
    taking_over = recovery is not None and recovery.running and not _claimed_by(r, recovery)
    if r.status in FINAL_STATES:
        return Liveness(None, RECOVERING if taking_over else r.status, recovery)
    alive = owner_alive(r.owner, r.heartbeat_at)
    if taking_over:
        return Liveness(alive, RECOVERING, recovery)
    return Liveness(alive, r.status if alive else ORPHANED, recovery)


def _claimed_by(r: RunRecord, recovery: Recovery) -> bool:
    # An owner is "host:pid:random" (heddle._runtime.driver.new_owner).
    parts = (r.owner or "").split(":")
    return len(parts) >= 2 and parts[1] == str(recovery.pid)


def counts(c: StatusCounts | None) -> models.Counts:
    if c is None:
        return models.Counts()
    return models.Counts(
        total=c.total,
        by_status=dict(c.by_status),
        cached=c.cached,
        retried=c.retried,
        traces=c.traces,
    )


def error_info(text: str | None) -> models.ErrorInfo | None:
    v = values.error_view(text)
    return None if v is None else models.ErrorInfo(**v)


def recovery_info(rec: Recovery | None) -> models.Recovery | None:
    if rec is None:
        return None
    return models.Recovery(
        pid=rec.pid,
        started_at=rec.started_at,
        running=rec.running,
        exit_code=rec.exit_code,
        finished_at=rec.finished_at,
        message=rec.message,
    )


def run_summary(r: RunRecord, c: StatusCounts | None, live: Liveness) -> models.RunSummary:
    return models.RunSummary(
        id=r.id,
        name=r.name,
        root_task=r.root_task,
        root_action_id=r.root_action_id,
        status=r.status,
        display_status=live.display_status,
        driver_alive=live.driver_alive,
        executor=r.executor,
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        duration=duration(r.started_at or r.created_at, r.finished_at),
        abort_requested=r.abort_requested,
        actions=counts(c),
        failures=0 if c is None else c.by_status.get("failed", 0),
        error=error_info(r.error),
        recovery=recovery_info(live.recovery),
    )


def action_summary(a: ActionRecord, children: StatusCounts | None = None) -> models.ActionSummary:
    return models.ActionSummary(**_action_fields(a, children))


def _action_fields(a: ActionRecord, children: StatusCounts | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "parent_id": a.parent_id,
        "seq": a.seq,
        "kind": a.kind,
        "task_name": a.task_name,
        "task_version": a.task_version,
        "group": a.group_name,
        "status": a.status,
        "attempts": a.attempts,
        "cached": a.cached,
        "queued_at": a.queued_at,
        "started_at": a.started_at,
        "finished_at": a.finished_at,
        "queue_duration": duration(a.queued_at, a.started_at),
        "duration": duration(a.started_at, a.finished_at),
        "error": error_info(a.error),
        "children": None if children is None else counts(children),
    }


def timeline_item(a: ActionRecord, spans: list[models.Attempt]) -> models.TimelineItem:
    return models.TimelineItem(**_action_fields(a, None), attempt_spans=spans)


def action_detail(a: ActionRecord, path: list[ActionRecord]) -> models.Action:
    return models.Action(
        **_action_fields(a, None),
        run_id=a.run_id,
        cache_key=a.cache_key,
        source_run_id=a.source_run_id,
        source_action_id=a.source_action_id,
        depends_on=_dependencies(a.deps),
        path=[action_summary(p) for p in path],
    )


def _dependencies(deps: str | None) -> list[models.Dependency]:
    try:
        items = json.loads(deps) if deps else []
        return [models.Dependency(kind=k, name=n, version=v) for k, n, v in items]
    except (ValueError, TypeError):
        return []  # unreadable: shown as none rather than failing the page


def attempt(t: AttemptRecord, resources: dict[str, Any]) -> models.Attempt:
    return models.Attempt(
        number=t.number,
        status=t.status,
        worker=t.worker,
        task_version=t.task_version,
        queued_at=t.queued_at,
        started_at=t.started_at,
        finished_at=t.finished_at,
        queue_duration=duration(t.queued_at, t.started_at),
        duration=duration(t.started_at, t.finished_at),
        error=error_info(t.error),
        resources=resources,
    )
