"""`heddle serve`: start the API and web UI over the current store and storage."""

from __future__ import annotations

import os

import click

from heddle.server.auth import is_loopback

TOKEN_ENV = "HEDDLE_API_TOKEN"
_HOST_ENV = "HEDDLE_SERVE_HOST"


def app_from_env() -> object:
    """The app factory uvicorn calls in --reload mode (settings come from the environment)."""
    from heddle.server.app import create_app

    return create_app(
        token=os.environ.get(TOKEN_ENV) or None, host=os.environ.get(_HOST_ENV, "127.0.0.1")
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Require 'Authorization: Bearer <token>' on every API call [env: {TOKEN_ENV}].",
)
@click.option("--reload/--no-reload", default=False, help="Restart when the code changes (dev).")
def serve(host: str, port: int, token: str | None, reload: bool) -> None:
    """Serve the web UI and the REST API (/api/v1) for the runs in this store."""
    import uvicorn

    from heddle._errors import StoreNotFoundError
    from heddle._sdk.config import get_reader

    try:
        get_reader()
    except StoreNotFoundError as exc:
        # The server never makes a store: it shows runs once a run has made one.
        click.echo(f"warning: {exc} (runs appear here once one is recorded)", err=True)

    if not token and not is_loopback(host):
        click.echo(
            f"warning: listening on {host} without a token: anyone who can reach it can read "
            f"every run; abort and recover are disabled. Set {TOKEN_ENV} to protect it.",
            err=True,
        )
    click.echo(f"Heddle UI on http://{host}:{port}/  (API docs: /api/docs)", err=True)
    if reload:
        if token:
            os.environ[TOKEN_ENV] = token
        os.environ[_HOST_ENV] = host
        uvicorn.run(
            "heddle.server.cli:app_from_env", factory=True, host=host, port=port, reload=True
        )
        return
    from heddle.server.app import create_app

    uvicorn.run(create_app(token=token, host=host), host=host, port=port, log_level="warning")
