"""Cheap answers to pollers: ETags made from what a body depends on, 304 for a client
that holds the current one, and each body built once and shared by every client.

The run page polls its run and tree every 1.5 s. The ETag of such an answer is a
hash of its inputs (the run's row, the run's shape fingerprint, the query), so a
poll of an unchanged run costs a primary-key read and a hash, and the first client
to see a change builds the body the others get.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from fastapi import Request, Response
from pydantic import BaseModel

MAX_BODIES = 512
MAX_BODY_BYTES = 64 * 1024 * 1024
_STRIPES = 64
# Clients must ask again each time (no-cache) but may keep what they were sent.
_HEADERS = {"Cache-Control": "no-cache"}


def _held(request: Request) -> set[str]:
    """The entity tags in If-None-Match (weak ones compare equal, as RFC 9110 says)."""
    header = request.headers.get("if-none-match")
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


class Bodies:
    """The bodies of conditional answers, by ETag (a bounded LRU)."""

    def __init__(self, salt: bytes | None = None) -> None:
        # Per server process: a new server (maybe new code) never matches old tags.
        self._salt = salt or secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._building = [threading.Lock() for _ in range(_STRIPES)]

    def etag(self, parts: Hashable) -> str:
        digest = hashlib.blake2b(repr(parts).encode(), key=self._salt, digest_size=16)
        return f'"{digest.hexdigest()}"'

    def respond(
        self, request: Request, parts: Hashable, build: Callable[[], BaseModel]
    ) -> Response:
        """304 if the client holds the body for ``parts``; else that body (built once)."""
        etag = self.etag(parts)
        headers = {**_HEADERS, "ETag": etag}
        held = _held(request)
        if etag in held or "*" in held:
            return Response(status_code=304, headers=headers)
        body = self._get(etag)
        if body is None:
            with self._building[hash(etag) % _STRIPES]:
                body = self._get(etag)
                if body is None:
                    body = build().model_dump_json().encode()
                    self._put(etag, body)
        return Response(body, media_type="application/json", headers=headers)

    def respond_with(self, request: Request, model: BaseModel) -> Response:
        """A body already built: its ETag is its hash (saves the transfer, not the work)."""
        body = model.model_dump_json().encode()
        etag = self.etag(hashlib.blake2b(body, digest_size=16).hexdigest())
        headers = {**_HEADERS, "ETag": etag}
        if etag in _held(request):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    def _get(self, etag: str) -> bytes | None:
        with self._lock:
            body = self._bodies.get(etag)
            if body is not None:
                self._bodies.move_to_end(etag)
            return body

    def _put(self, etag: str, body: bytes) -> None:
        with self._lock:
            if etag in self._bodies:
                return
            self._bodies[etag] = body
            self._bytes += len(body)
            while self._bodies and (len(self._bodies) > MAX_BODIES or self._bytes > MAX_BODY_BYTES):
                _, dropped = self._bodies.popitem(last=False)
                self._bytes -= len(dropped)
