"""`heddle serve`: start the API and web UI over the current store and storage."""

from __future__ import annotations

import errno
import os
import re
import socket

import click

from heddle.server.auth import is_loopback

TOKEN_ENV = "HEDDLE_API_TOKEN"
ALLOWED_HOSTS_ENV = "HEDDLE_ALLOWED_HOSTS"
_HOST_ENV = "HEDDLE_SERVE_HOST"


def allowed_hosts_from(option: tuple[str, ...], env: str | None) -> list[str]:
    """The names from --allowed-host and from the environment (comma or space separated)."""
    names = list(option)
    names += [n for n in re.split(r"[,\s]+", env or "") if n]
    return names


def app_from_env() -> object:
    """The app factory uvicorn calls in --reload mode (settings come from the environment)."""
    from heddle.server.app import create_app

    return create_app(
        token=os.environ.get(TOKEN_ENV) or None,
        host=os.environ.get(_HOST_ENV, "127.0.0.1"),
        allowed_hosts=allowed_hosts_from((), os.environ.get(ALLOWED_HOSTS_ENV)),
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a usage error that names what is wrong."""
    try:
        infos = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise click.BadParameter(f"cannot resolve {host!r}: {exc}", param_hint="'--host'") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = (
            "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be opened ({exc.strerror})"
        )
        raise click.ClickException(
            f"port {port} on {host} {reason}: choose another with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"Require 'Authorization: Bearer <token>' on every API call [env: {TOKEN_ENV}].",
)
@click.option(
    "--allowed-host",
    "allowed_host",
    multiple=True,
    metavar="NAME",
    help=(
        "A name this server is reached by, besides loopback names and the --host address "
        "(repeatable; '*.example.com' for subdomains, '*' for any) "
        f"[env: {ALLOWED_HOSTS_ENV}, comma-separated]."
    ),
)
@click.option("--reload/--no-reload", default=False, help="Restart when the code changes (dev).")
def serve(
    host: str, port: int, token: str | None, allowed_host: tuple[str, ...], reload: bool
) -> None:
    """Serve the web UI and the REST API (/api/v1) for the runs in this store."""
    import uvicorn

    from heddle._errors import StoreNotFoundError
    from heddle._sdk.config import get_reader

    try:
        get_reader()
    except StoreNotFoundError as exc:
        # The server never makes a store: it shows runs once a run has made one.
        click.echo(f"warning: {exc} (runs appear here once one is recorded)", err=True)

    allowed = allowed_hosts_from(allowed_host, os.environ.get(ALLOWED_HOSTS_ENV))
    sock = bind(host, port)
    if not token and not is_loopback(host):
        click.echo(
            f"warning: listening on {host} without a token: anyone who can reach it can read "
            f"every run; abort and recover are disabled. Set {TOKEN_ENV} to protect it.",
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Heddle UI on http://{shown}:{port}/  (API docs: /api/docs)", err=True)
    if reload:
        sock.close()  # the reloader binds again in its own process
        if token:
            os.environ[TOKEN_ENV] = token
        os.environ[_HOST_ENV] = host
        os.environ[ALLOWED_HOSTS_ENV] = ",".join(allowed)
        uvicorn.run(
            "heddle.server.cli:app_from_env", factory=True, host=host, port=port, reload=True
        )
        return
    from heddle.server.app import create_app

    app = create_app(token=token, host=host, allowed_hosts=allowed)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
