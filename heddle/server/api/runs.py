"""/api/v1/runs: list, get, abort and recover runs; the action tree and the timeline."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from heddle._errors import RecoveryError
from heddle._sdk import run as sdk_run
from heddle._store import FINAL_STATES, ActionRecord
from heddle.server import state as s
from heddle.server.api import models
from heddle.server.state import ServerState, get_state
from heddle.server.values import parameter_names

router = APIRouter(prefix="/runs", tags=["runs"])
State = Annotated[ServerState, Depends(get_state)]

MAX_PAGE = 500


def find_action(st: ServerState, run_id: str, action_id: str) -> ActionRecord:
    action = st.queries.find_action(run_id, action_id)
    if action is None:
        raise HTTPException(404, f"action {action_id!r} not found in run {run_id}")
    return action


@router.get("", response_model=models.RunPage, summary="List runs, newest first")
def list_runs(
    st: State,
    status: Annotated[str | None, Query(description="exact status, e.g. failed")] = None,
    task: Annotated[str | None, Query(description="part of the root task's name")] = None,
    name: Annotated[str | None, Query(description="part of the run's name")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> models.RunPage:
    records = st.session.store.list_runs(
        limit=limit, offset=offset, status=status, task=task, name=name
    )
    total = st.queries.count_runs(status=status, task=task, name=name)
    counts = st.queries.run_counts([r.id for r in records])
    return models.RunPage(
        runs=[s.run_summary(r, counts.get(r.id)) for r in records],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/{run_id}", response_model=models.Run, summary="One run (id or unique prefix)")
def get_run(st: State, run_id: str) -> models.Run:
    r = st.session.store.get_run(run_id)
    summary = s.run_summary(r, st.queries.shape(r.id).totals)
    root = st.queries.find_action(r.id, r.root_action_id)
    names = parameter_names(r.program, r.root_task, "task")
    return models.Run(
        **summary.model_dump(),
        owner=r.owner,
        heartbeat_at=r.heartbeat_at,
        inputs=[v.model_dump() for v in st.inputs(r.inputs, names)],
        output=st.value(r.output if r.output is not None else (root.output if root else None)),
    )


@router.post("/{run_id}/abort", response_model=models.RunControl, summary="Ask a run to stop")
def abort_run(st: State, run_id: str, request: Request) -> models.RunControl:
    st.auth.check_write(request)
    r = st.session.store.get_run(run_id)
    if r.status in FINAL_STATES:
        return models.RunControl(id=r.id, status=r.status, message=f"run already {r.status}")
    status = sdk_run.abort(r.id, wait=5.0)
    message = "aborted" if status == "aborted" else "abort requested; the run is stopping"
    return models.RunControl(id=r.id, status=status, message=message)


@router.post(
    "/{run_id}/recover",
    response_model=models.RunControl,
    summary="Resume a failed, aborted or orphaned run in this server's process",
)
def recover_run(st: State, run_id: str, request: Request) -> models.RunControl:
    st.auth.check_write(request)
    r = st.session.store.get_run(run_id)
    try:
        sdk_run.recover(r.id, wait=False)
    except RecoveryError as exc:
        raise HTTPException(409, str(exc)) from None
    except (ImportError, OSError, LookupError) as exc:
        raise HTTPException(
            409, f"cannot load the program of run {r.id}: {type(exc).__name__}: {exc}"
        ) from None
    return models.RunControl(id=r.id, status="running", message="recovering")


@router.get(
    "/{run_id}/tree", response_model=models.TreePage, summary="One level of the action tree"
)
def tree(
    st: State,
    run_id: str,
    parent: Annotated[
        str | None, Query(description="action id; the root action if omitted")
    ] = None,
    group: Annotated[str | None, Query(description="a group under the parent, e.g. eval/a")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> models.TreePage:
    r = st.session.store.get_run(run_id)
    p = find_action(st, r.id, parent or r.root_action_id)
    page = st.queries.children(r.id, p.id, group or None, offset, limit)
    return models.TreePage(
        run_id=r.id,
        parent=s.action_summary(p, page.child_counts.get(p.id)),
        group=group or None,
        groups=[
            models.Group(name=g.name, label=g.name.rsplit("/", 1)[-1], counts=s.counts(g.counts))
            for g in page.groups
        ],
        actions=[s.action_summary(a, page.child_counts.get(a.id)) for a in page.actions],
        total=page.total,
        offset=offset,
        limit=limit,
    )


@router.get("/{run_id}/timeline", response_model=models.Timeline, summary="Actions in start order")
def timeline(
    st: State,
    run_id: str,
    parent: Annotated[str | None, Query(description="only the children of this action")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> models.Timeline:
    r = st.session.store.get_run(run_id)
    items, total = st.queries.timeline(r.id, offset, limit, parent)
    spans = st.queries.attempts_of(r.id, [a.id for a in items if a.attempts > 1])
    start = r.started_at or r.created_at
    end = r.finished_at or time.time()
    return models.Timeline(
        run_id=r.id,
        start=start,
        end=max(end, start),
        items=[
            s.timeline_item(a, [s.attempt(t, extra) for t, extra in spans.get(a.id, [])])
            for a in items
        ],
        total=total,
        offset=offset,
        limit=limit,
    )
