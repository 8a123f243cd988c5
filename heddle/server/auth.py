"""Who may call the API: a bearer token when one is set, and signed links for what a
browser loads without headers (report iframes, downloads).

Mutating calls (abort, recover) also need the token whenever the server listens
beyond loopback, so an open port on a network never lets strangers stop runs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

LINK_SECONDS = 3600.0


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
        if self.token is None:
            if self.loopback:
                return
            raise HTTPException(
                status_code=403,
                detail=(
                    "abort and recover need a token on a server that listens beyond "
                    "loopback: restart it with HEDDLE_API_TOKEN set"
                ),
            )
        self.check_read(request)

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
