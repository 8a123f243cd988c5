"""The FastAPI app: the versioned REST API under /api/v1 and the web UI over it.

The UI pages are shells rendered by Jinja; their data comes from the API through
small hand-written scripts, so the token guards all data and no build step exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

import heddle
from heddle._errors import (
    HeddleError,
    RecoveryError,
    RunNotFoundError,
    StorageError,
    StoreError,
)
from heddle._sdk.config import Session, current_settings, get_reader
from heddle._store import store_backend
from heddle.server.api import actions, models, runs
from heddle.server.auth import SAFE_METHODS, Auth, is_loopback
from heddle.server.conditional import Bodies
from heddle.server.guards import HostPolicy, RequestGuard
from heddle.server.recovery import Recoveries
from heddle.server.state import ServerState, get_state, state_of

_UI = Path(__file__).parent / "ui"
log = logging.getLogger("heddle.server")


def create_app(
    session: Session | None = None,
    token: str | None = None,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
) -> FastAPI:
    """The server app over ``session`` (by default the process's current session, or a
    read-only one on the existing store, opened on the first request that needs it).

    ``token`` guards every API call; ``host`` is where the server listens, which
    decides whether abort and recover may be called without a token (loopback only)
    and, with ``allowed_hosts``, which names the Host header may carry. Abort acts
    through the process's writable session (opened on first use from the same
    settings), so pass that one or none; recover runs in a child process.
    """
    auth = Auth(token=token or None, loopback=is_loopback(host))
    app = FastAPI(
        title="Heddle",
        version=heddle.__version__,
        description="Runs, actions, values, logs, traces and reports of a Heddle store.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    if session is not None:
        given = session
        state = ServerState(
            lambda: given, auth, given.store.dialect, Recoveries(given.settings), Bodies()
        )
    else:
        settings = current_settings()
        state = ServerState(
            get_reader, auth, store_backend(settings.db_url), Recoveries(settings), Bodies()
        )
    app.state.heddle = state
    _add_error_handlers(app)
    app.add_middleware(RequestGuard, hosts=HostPolicy.for_server(host, allowed_hosts))

    # The dependencies are async (they do no I/O): a sync one would cost a hop to the
    # thread pool on every request.
    async def require_token(request: Request) -> None:
        auth.check_read(request)

    async def refuse_cross_site_mutations(request: Request) -> None:
        # On every route of the API, so a new mutating route cannot skip the check.
        if request.method not in SAFE_METHODS:
            auth.check_write(request)

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(refuse_cross_site_mutations)])

    @api.get("/health", response_model=models.Health, tags=["health"])
    async def health(st: Annotated[ServerState, Depends(get_state)]) -> models.Health:
        """Liveness, and what a client needs before its first call (open to all)."""
        return models.Health(
            version=heddle.__version__,
            store=st.backend,
            auth=st.auth.token is not None,
            mutations=st.auth.token is not None or st.auth.loopback,
        )

    guarded = [Depends(require_token)]
    api.include_router(runs.router, dependencies=guarded)
    api.include_router(actions.router, dependencies=guarded)
    api.include_router(actions.links)
    app.include_router(api)
    _add_ui(app)
    return app


def _add_ui(app: FastAPI) -> None:
    templates = Jinja2Templates(directory=str(_UI / "templates"))
    app.mount("/static", StaticFiles(directory=str(_UI / "static")), name="static")

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        csrf = state_of(request).auth.csrf_token
        return templates.TemplateResponse(
            request,
            name,
            {"version": heddle.__version__, "csrf": csrf, **context},
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(request: Request) -> HTMLResponse:
        return page(request, "runs.html", title="Runs", page="runs", script="runs.js")

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        return page(
            request, "run.html", title=f"Run {run_id}", page="run", script="run.js", run_id=run_id
        )

    @app.get(
        "/runs/{run_id}/actions/{action_id}", response_class=HTMLResponse, include_in_schema=False
    )
    def action_page(request: Request, run_id: str, action_id: str) -> HTMLResponse:
        return page(
            request,
            "action.html",
            title=f"Action {action_id[:12]}",
            page="action",
            script="action.js",
            run_id=run_id,
            action_id=action_id,
        )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> Response:
        return _error(404, str(exc))

    async def conflict(_: Request, exc: Exception) -> Response:
        return _error(409, str(exc))

    async def unavailable(_: Request, exc: Exception) -> Response:
        log.warning("store or storage error: %s", exc)
        return _error(503, str(exc))

    async def bad_request(_: Request, exc: Exception) -> Response:
        return _error(400, str(exc))

    async def internal(_: Request, exc: Exception) -> Response:
        log.exception("internal error", exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    app.add_exception_handler(RunNotFoundError, not_found)
    app.add_exception_handler(RecoveryError, conflict)
    app.add_exception_handler(StoreError, unavailable)
    app.add_exception_handler(StorageError, unavailable)
    app.add_exception_handler(HeddleError, bad_request)
    app.add_exception_handler(Exception, internal)
