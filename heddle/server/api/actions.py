"""/api/v1/runs/{run}/actions/{action}: one action, its attempts, values, logs,
traces and report; /api/v1/blobs/{key}: downloads of files and tables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from heddle._errors import BlobCorruptError, StorageError
from heddle.server import state as s
from heddle.server.api import models
from heddle.server.api.params import MAX_PAGE, Offset
from heddle.server.api.runs import find_action
from heddle.server.state import ServerState, get_state
from heddle.server.values import parameter_names

router = APIRouter(prefix="/runs/{run_id}/actions/{action_id}", tags=["actions"])
# Fetched by the browser without headers (iframes, downloads): signed links instead.
links = APIRouter(tags=["links"])
State = Annotated[ServerState, Depends(get_state)]

LOG_TAIL = 1024 * 1024
# Reports are shown in a sandbox: scripts may run (plots), but with an opaque origin,
# so they can read neither the UI's storage nor its token, and may not call home.
REPORT_CSP = (
    "sandbox allow-scripts allow-popups allow-downloads; default-src 'none'; "
    "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'"
)


# Reports are fragments appended one call at a time; the page around them gives
# them a doctype, an encoding and readable defaults.
_REPORT_PAGE = (
    '<!doctype html><html><head><meta charset="utf-8">'
    "<style>body{{font:14px/1.45 system-ui,sans-serif;margin:14px;color:#1d1f2b}}"
    "img{{max-width:100%}}</style></head><body>{body}</body></html>"
)


def log_path(run_id: str, action_id: str, attempt: int) -> str:
    return f"logs/{run_id}/{action_id}/{attempt}.log"


def report_path(run_id: str, action_id: str) -> str:
    return f"reports/{run_id}/{action_id}.html"


@router.get("", response_model=models.Action, summary="One action (id or unique prefix)")
def get_action(st: State, run_id: str, action_id: str) -> models.Action:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    return s.action_detail(a, st.queries.ancestors(r.id, a))


@router.get("/attempts", response_model=models.Attempts, summary="Attempts, with errors")
def get_attempts(st: State, run_id: str, action_id: str) -> models.Attempts:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    found = st.queries.attempts_of(r.id, [a.id]).get(a.id, [])
    return models.Attempts(action_id=a.id, attempts=[s.attempt(t, extra) for t, extra in found])


@router.get("/inputs", response_model=models.Values, summary="Inputs, by parameter")
def get_inputs(st: State, run_id: str, action_id: str) -> models.Values:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    names = parameter_names(r.program, a.task_name, a.kind)
    return models.Values(action_id=a.id, values=st.inputs(a.inputs, names))


@router.get("/outputs", response_model=models.Values, summary="The output")
def get_outputs(st: State, run_id: str, action_id: str) -> models.Values:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    if a.output is None:
        return models.Values(action_id=a.id, values=[])
    return models.Values(action_id=a.id, values=[models.Value(name="o0", value=st.value(a.output))])


@router.get("/logs", response_model=models.Log, summary="What an attempt printed")
def get_logs(
    st: State,
    run_id: str,
    action_id: str,
    attempt: Annotated[int | None, Query(ge=1, description="the latest if omitted")] = None,
    offset: Annotated[int | None, Query(ge=0, description="bytes already read")] = None,
) -> models.Log:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    numbers = sorted(t.number for t, _ in st.queries.attempts_of(r.id, [a.id]).get(a.id, []))
    if attempt is not None and attempt not in numbers:
        known = ", ".join(map(str, numbers)) or "none"
        raise HTTPException(404, f"action {a.id} has no attempt {attempt} (attempts: {known})")
    number = attempt or (numbers[-1] if numbers else None)
    data = None if number is None else st.session.blobs.get_text(log_path(r.id, a.id, number))
    if data is None:
        return models.Log(
            action_id=a.id,
            attempt=number,
            attempts=numbers,
            available=False,
            text="",
            offset=0,
            size=0,
            truncated=False,
        )
    start = offset if offset is not None else max(0, len(data) - LOG_TAIL)
    start = min(start, len(data))
    return models.Log(
        action_id=a.id,
        attempt=number,
        attempts=numbers,
        available=True,
        text=data[start:].decode("utf-8", errors="replace"),
        offset=start,
        size=len(data),
        truncated=offset is None and start > 0,
    )


@router.get("/traces", response_model=models.Traces, summary="Recorded steps inside the action")
def get_traces(
    st: State,
    run_id: str,
    action_id: str,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> models.Traces:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    steps, total = st.queries.steps(r.id, a.id, offset, limit)
    traces = [
        models.Trace(
            **s.action_summary(t).model_dump(),
            inputs=st.inputs(t.inputs, parameter_names(r.program, t.task_name, t.kind)),
            output=st.value(t.output),
        )
        for t in steps
    ]
    return models.Traces(action_id=a.id, traces=traces, total=total, offset=offset, limit=limit)


@router.get("/report", response_model=models.Report, summary="Whether the action wrote a report")
def get_report(st: State, run_id: str, action_id: str) -> models.Report:
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    data = st.session.blobs.get_text(report_path(r.id, a.id))
    if data is None:
        return models.Report(action_id=a.id, available=False, size=0, url=None)
    return models.Report(
        action_id=a.id, available=True, size=len(data), url=st.report_link(r.id, a.id)
    )


@links.get(
    "/runs/{run_id}/actions/{action_id}/report/html",
    response_class=HTMLResponse,
    summary="The report's HTML, served with a sandboxing Content-Security-Policy",
)
def get_report_html(st: State, run_id: str, action_id: str, request: Request) -> Response:
    st.auth.check_link(request, f"report:{run_id}/{action_id}")
    r = st.session.store.get_run(run_id)
    a = find_action(st, r.id, action_id)
    data = st.session.blobs.get_text(report_path(r.id, a.id))
    if data is None:
        raise HTTPException(404, f"action {a.id} of run {r.id} wrote no report")
    return HTMLResponse(
        _REPORT_PAGE.format(body=data.decode("utf-8", errors="replace")),
        headers={
            "Content-Security-Policy": REPORT_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


_KEY = re.compile(r"^sha256:[0-9a-f]{64}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@links.get("/blobs/{key}", summary="Download a stored file or table (by content key)")
def get_blob(
    st: State, key: str, request: Request, name: Annotated[str | None, Query()] = None
) -> Response:
    if not _KEY.match(key):
        raise HTTPException(404, f"{key!r} is not a blob key (sha256:<64 hex digits>)")
    st.auth.check_link(request, f"blob:{key}")
    filename = _UNSAFE_NAME.sub("_", name or "")[:120] or key.replace(":", "-")
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
    }
    blobs = st.session.blobs
    opener = getattr(blobs, "open_verified", None)
    try:
        if callable(opener):
            # Every byte is hashed before the first is sent: a corrupt blob is an error
            # here, not a download that looks fine. Then streamed, not held in memory.
            reader = opener(key)
            headers["Content-Length"] = str(reader.size)
            return StreamingResponse(
                _chunks(reader), media_type="application/octet-stream", headers=headers
            )
        data = blobs.get(key)
    except BlobCorruptError as exc:
        raise HTTPException(500, str(exc)) from None
    except StorageError as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(data, media_type="application/octet-stream", headers=headers)


def _chunks(reader: Any) -> Iterator[bytes]:
    try:
        while chunk := reader.read(1024 * 1024):
            yield bytes(chunk)
    finally:
        reader.close()
