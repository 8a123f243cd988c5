"""What every request passes before it reaches a route: its Host must name this server
(so a DNS-rebinding page cannot read the API through a name it controls), its path
and query must hold no NUL bytes (no store can match them), and every response gets
the security headers.

Plain ASGI rather than BaseHTTPMiddleware: it runs on every poll of every page, so
it adds no task or body copy per request.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", ""})

# The UI loads only its own scripts and styles; reports live in sandboxed frames.
UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets, case or a trailing dot."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8080
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


@dataclass(frozen=True)
class HostPolicy:
    """Which names a request's Host header may carry.

    Loopback names and the address the server listens on are always allowed, plus the
    configured names (exact, ``*.example.com`` for subdomains, or ``*`` for any).
    A server listening on every interface also answers to IP addresses and to this
    machine's own names: a rebinding attack needs a name the attacker controls.
    """

    names: frozenset[str]
    patterns: tuple[str, ...] = ()
    any_host: bool = False
    any_ip: bool = False

    @classmethod
    def for_server(cls, bound: str, allowed: Iterable[str] = ()) -> HostPolicy:
        names = set(LOOPBACK_NAMES)
        patterns: list[str] = []
        any_host = False
        bound_name = host_name(bound) if bound.strip() else ""
        wildcard = bound_name in WILDCARD_ADDRESSES
        if not wildcard:
            names.add(bound_name)
        else:
            names.update({host_name(socket.gethostname()), host_name(socket.getfqdn())})
        for raw in allowed:
            name = raw.strip().lower().rstrip(".")
            if not name:
                continue
            if name == "*":
                any_host = True
            elif name.startswith("*."):
                patterns.append(name[1:])
            else:
                names.add(host_name(name))
        return cls(frozenset(names), tuple(patterns), any_host, wildcard)

    def allows(self, header: str | None) -> bool:
        if self.any_host:
            return True
        if not header:
            return False
        name = host_name(header)
        if name in self.names:
            return True
        if any(name.endswith(p) for p in self.patterns):
            return True
        return self.any_ip and _is_ip(name)


class RequestGuard:
    """Refuse requests with a foreign Host or NUL bytes; add the security headers."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.hosts.allows(host):
            shown = (host or "")[:100]
            await _refuse(
                send,
                400,
                f"this server does not answer to the host {shown!r}: if that is a name "
                "of this server, start it with `heddle serve --allowed-host NAME` "
                "(or HEDDLE_ALLOWED_HOSTS)",
            )
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _refuse(send, 400, "the request's path or query holds a NUL byte")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secured(list(message.get("headers", [])))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _secured(headers: list[Any]) -> list[Any]:
    present = {bytes(k).lower() for k, _ in headers}
    add = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
    html = any(
        bytes(k).lower() == b"content-type" and bytes(v).startswith(b"text/html")
        for k, v in headers
    )
    if html:
        add.append((b"content-security-policy", UI_CSP.encode()))
    headers.extend((k, v) for k, v in add if k not in present)
    return headers


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
