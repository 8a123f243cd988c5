"""Who may call the API: a bearer token when one is set, and signed links for what a
browser loads without headers (report iframes, downloads).

Mutating calls (abort, recover) also need the token whenever the server listens
beyond loopback, so an open port on a network never lets strangers stop runs. On a
loopback server without a token, a mutation must come from the UI's own page: a
same-origin request carrying the CSRF token the page was served with. A web page
elsewhere can neither read that token nor send the header without a CORS preflight
(which this server never grants).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

LINK_SECONDS = 3600.0
CSRF_HEADER = "X-Heddle-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Auth:
    token: str | None
    loopback: bool
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def mutations_allowed_without_token(self) -> bool:
        return self.token is None and self.loopback

    def _bearer_ok(self, request: Request) -> bool:
        if self.token is None:
            return False
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    def check_read(self, request: Request) -> None:
        if self.token is None or self._bearer_ok(request):
            return
        raise HTTPException(
            status_code=401,
            detail="this server needs a token: send 'Authorization: Bearer <HEDDLE_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )

    def check_write(self, request: Request) -> None:
        if self.token is not None:
            # A bearer token is proof enough: a cross-origin page cannot send one.
            self.check_read(request)
            return
        if not self.loopback:
            raise HTTPException(
                status_code=403,
                detail=(
                    "abort and recover need a token on a server that listens beyond "
                    "loopback: restart it with HEDDLE_API_TOKEN set"
                ),
            )
        self._check_same_origin(request)
        given = request.headers.get(CSRF_HEADER, "")
        if not (given and hmac.compare_digest(given.encode(), self.csrf_token.encode())):
            raise HTTPException(
                status_code=403,
                detail=(
                    f"missing or wrong {CSRF_HEADER} header: abort and recover from the web "
                    "UI (reload the page if the server restarted), with `heddle abort` / "
                    "`heddle recover`, or start the server with HEDDLE_API_TOKEN and send "
                    "a bearer token"
                ),
            )

    def _check_same_origin(self, request: Request) -> None:
        """Refuse what a browser says came from another site (Origin, Referer, Sec-Fetch-Site)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise _cross_origin(f"Sec-Fetch-Site: {site}")
        origin = request.headers.get("origin")
        source = origin if origin is not None else request.headers.get("referer")
        if source is None:
            return
        parts = urlsplit(source)
        host = request.headers.get("host", "")
        if origin == "null" or parts.netloc.lower() != host.lower():
            raise _cross_origin(source[:100])

    @property
    def csrf_token(self) -> str:
        """The token the UI's pages carry and send back on mutations (per server process)."""
        return hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()

    # -- signed links ------------------------------------------------------------------

    def sign(self, subject: str, now: float | None = None) -> str:
        """Query parameters that let a browser fetch ``subject`` without the token."""
        exp = int((now or time.time()) + LINK_SECONDS)
        return f"exp={exp}&sig={self._mac(subject, exp)}"

    def _mac(self, subject: str, exp: int) -> str:
        msg = f"{subject}\n{exp}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def check_link(self, request: Request, subject: str) -> None:
        """Allow a valid bearer token, or an unexpired signature for ``subject``."""
        if self.token is None or self._bearer_ok(request):
            return
        exp_text = request.query_params.get("exp", "")
        sig = request.query_params.get("sig", "")
        if exp_text.isdigit() and sig:
            exp = int(exp_text)
            if exp >= time.time() and hmac.compare_digest(sig, self._mac(subject, exp)):
                return
        self.check_read(request)


def _cross_origin(source: str) -> HTTPException:
    return HTTPException(
        status_code=403,
        detail=f"cross-origin request refused ({source}): abort and recover only from this "
        "server's own pages",
    )
