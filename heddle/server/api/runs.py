"""/api/v1/runs: list, get, abort and recover runs; the action tree and the timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from heddle._runtime.driver import owner_alive
from heddle._sdk import run as sdk_run
from heddle._store import FINAL_STATES, SUCCEEDED, ActionRecord, RunRecord
from heddle.server import state as s
from heddle.server.api import models
from heddle.server.api.params import MAX_PAGE, Offset, RunStatus
from heddle.server.queries import RunShape
from heddle.server.state import ServerState, get_state
from heddle.server.values import parameter_names

router = APIRouter(prefix="/runs", tags=["runs"])
State = Annotated[ServerState, Depends(get_state)]


def find_action(st: ServerState, run_id: str, action_id: str) -> ActionRecord:
    action = st.queries.find_action(run_id, action_id)
    if action is None:
        raise HTTPException(404, f"action {action_id!r} not found in run {run_id}")
    return action


@router.get("", response_model=models.RunPage, summary="List runs, newest first")
def list_runs(
    st: State,
    request: Request,
    status: Annotated[RunStatus | None, Query(description="exact status, e.g. failed")] = None,
    task: Annotated[str | None, Query(description="part of the root task's name")] = None,
    name: Annotated[str | None, Query(description="part of the run's name")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> Response:
    records = st.session.store.list_runs(
        limit=limit, offset=offset, status=status, task=task, name=name
    )
    total = st.queries.count_runs(status=status, task=task, name=name)
    counts = st.queries.run_counts(records)
    page = models.RunPage(
        runs=[
            s.run_summary(r, counts.get(r.id), s.liveness(r, st.recoveries.get(r.id)))
            for r in records
        ],
        total=total,
        limit=limit,
        offset=offset,
    )
    return st.bodies.answer_with(request, page)


# The polled endpoints (run, tree, timeline) are async: an unchanged answer needs
# one read of the run's row (on the polls' own threads) and no other I/O.


async def _run_and_shape(st: ServerState, run_id: str) -> tuple[RunRecord, RunShape]:
    r = await st.in_poll_thread(st.session.store.get_run, run_id)
    shape = st.queries.kept_shape(r)
    if shape is None:
        shape = await st.in_poll_thread(st.queries.shape, r)
    return r, shape


@router.get("/{run_id}", response_model=models.Run, summary="One run (id or unique prefix)")
async def get_run(st: State, run_id: str, request: Request) -> Response:
    r, shape = await _run_and_shape(st, run_id)
    live = s.liveness(r, st.recoveries.get(r.id))

    def build() -> models.Run:
        summary = s.run_summary(r, shape.totals, live)
        root = st.queries.find_action(r.id, r.root_action_id)
        names = parameter_names(r.program, r.root_task, "task")
        output = r.output if r.output is not None else (root.output if root else None)
        return models.Run(
            **summary.model_dump(),
            owner=r.owner,
            heartbeat_at=r.heartbeat_at,
            inputs=[v.model_dump() for v in st.inputs(r.inputs, names)],
            output=st.value(output),
        )

    return await st.bodies.answer(
        request, ("run", r, shape.fingerprint, live), build, st.in_poll_thread
    )


@router.post("/{run_id}/abort", response_model=models.RunControl, summary="Ask a run to stop")
def abort_run(st: State, run_id: str) -> models.RunControl:
    r = st.session.store.get_run(run_id)
    if r.status in FINAL_STATES:
        return models.RunControl(id=r.id, status=r.status, message=f"run already {r.status}")
    status = sdk_run.abort(r.id, wait=5.0)
    message = "aborted" if status == "aborted" else "abort requested; the run is stopping"
    return models.RunControl(id=r.id, status=status, message=message)


@router.post(
    "/{run_id}/recover",
    response_model=models.RunControl,
    summary="Resume a failed, aborted or orphaned run, in a new `heddle recover` process",
)
def recover_run(st: State, run_id: str) -> models.RunControl:
    r = st.session.store.get_run(run_id)
    # The checks heddle.recover makes before it loads the program, so the common
    # refusals are answered here; the child makes them again before it claims the run.
    if r.status == SUCCEEDED:
        raise HTTPException(409, f"run {r.id} already succeeded; nothing to recover")
    if r.status not in FINAL_STATES and owner_alive(r.owner, r.heartbeat_at):
        raise HTTPException(
            409,
            f"run {r.id} is still being driven by {r.owner}: abort it first, "
            "or wait for its lease to expire",
        )
    started = st.recoveries.start(r)  # RecoveryError (409) if one is under way
    return models.RunControl(
        id=r.id, status=r.status, message=f"recovering in process {started.pid}"
    )


@router.get(
    "/{run_id}/tree", response_model=models.TreePage, summary="One level of the action tree"
)
async def tree(
    st: State,
    run_id: str,
    request: Request,
    parent: Annotated[
        str | None, Query(description="action id; the root action if omitted")
    ] = None,
    group: Annotated[str | None, Query(description="a group under the parent, e.g. eval/a")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    r, shape = await _run_and_shape(st, run_id)

    def build() -> models.TreePage:
        p = find_action(st, r.id, parent or r.root_action_id)
        page = st.queries.children(r.id, p.id, group or None, offset, limit, shape)
        return models.TreePage(
            run_id=r.id,
            parent=s.action_summary(p, page.child_counts.get(p.id)),
            group=group or None,
            groups=[
                models.Group(
                    name=g.name, label=g.name.rsplit("/", 1)[-1], counts=s.counts(g.counts)
                )
                for g in page.groups
            ],
            actions=[s.action_summary(a, page.child_counts.get(a.id)) for a in page.actions],
            total=page.total,
            offset=offset,
            limit=limit,
        )

    version = (r.id, r.status, r.finished_at, shape.fingerprint)
    return await st.bodies.answer(
        request, ("tree", version, parent, group, offset, limit), build, st.in_poll_thread
    )


@router.get("/{run_id}/timeline", response_model=models.Timeline, summary="Actions in start order")
async def timeline(
    st: State,
    run_id: str,
    request: Request,
    parent: Annotated[str | None, Query(description="only the children of this action")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 200,
) -> Response:
    r, shape = await _run_and_shape(st, run_id)

    def build() -> models.Timeline:
        under = None if parent is None else find_action(st, r.id, parent).id
        items, total = st.queries.timeline(r.id, offset, limit, under)
        # Every attempt of the page: each is drawn as its queued part, then its running part.
        spans = st.queries.attempts_of(r.id, [a.id for a in items if a.attempts > 0])
        start = r.started_at or r.created_at
        return models.Timeline(
            run_id=r.id,
            start=start,
            end=None if r.finished_at is None else max(r.finished_at, start),
            items=[
                s.timeline_item(a, [s.attempt(t, extra) for t, extra in spans.get(a.id, [])])
                for a in items
            ],
            total=total,
            offset=offset,
            limit=limit,
        )

    version = (r.id, r.status, r.created_at, r.started_at, r.finished_at, shape.fingerprint)
    return await st.bodies.answer(
        request, ("timeline", version, parent, offset, limit), build, st.in_poll_thread
    )
