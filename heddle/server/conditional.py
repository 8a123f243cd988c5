"""Cheap answers to pollers: ETags made from what a body depends on, 304 for a client
that holds the current one, and each body built once and shared by every client.

The run page polls its run and tree every 1.5 s. The ETag of such an answer is a
hash of its inputs (the run's row, the run's shape fingerprint, the query), so a
poll of an unchanged run costs a primary-key read and a hash. When the run changes,
the first poll starts building the new body on a worker thread and every other poll
of it awaits that build on the event loop, holding no thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from fastapi import Request, Response
from pydantic import BaseModel

MAX_BODIES = 512
MAX_BODY_BYTES = 64 * 1024 * 1024
# Clients must ask again each time (no-cache) but may keep what they were sent.
_HEADERS = {"Cache-Control": "no-cache"}


def _held(request: Request) -> set[str]:
    """The entity tags in If-None-Match (weak ones compare equal, as RFC 9110 says)."""
    header = request.headers.get("if-none-match")
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _json(body: bytes, etag: str) -> Response:
    return Response(body, media_type="application/json", headers={**_HEADERS, "ETag": etag})


class Bodies:
    """The bodies of conditional answers, by ETag (a bounded LRU)."""

    def __init__(self, salt: bytes | None = None) -> None:
        # Per server process: a new server (maybe new code) never matches old tags.
        self._salt = salt or secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        # Builds under way, by ETag; touched only on the event loop's thread.
        self._building: dict[str, asyncio.Future[bytes]] = {}

    def etag(self, parts: Hashable) -> str:
        digest = hashlib.blake2b(repr(parts).encode(), key=self._salt, digest_size=16)
        return f'"{digest.hexdigest()}"'

    async def answer(
        self,
        request: Request,
        parts: Hashable,
        build: Callable[[], BaseModel],
        in_thread: Callable[[Callable[[], bytes]], Awaitable[bytes]],
    ) -> Response:
        """304 if the client holds the body for ``parts``; else that body, built once
        (by ``build``, run through ``in_thread``) for all the polls that want it."""
        etag = self.etag(parts)
        held = _held(request)
        if etag in held or "*" in held:
            return Response(status_code=304, headers={**_HEADERS, "ETag": etag})
        body = self._get(etag)
        if body is not None:
            return _json(body, etag)
        flight = self._building.get(etag)
        if flight is None:

            def make() -> bytes:
                made = build().model_dump_json().encode()
                self._put(etag, made)
                return made

            flight = asyncio.ensure_future(in_thread(make))
            self._building[etag] = flight
            flight.add_done_callback(lambda done: self._landed(etag, done))
        # Shielded: a poll that goes away does not cancel the build the others await.
        return _json(await asyncio.shield(flight), etag)

    def _landed(self, etag: str, done: asyncio.Future[bytes]) -> None:
        self._building.pop(etag, None)
        if not done.cancelled():
            done.exception()  # every waiter got it already; do not log it again

    def answer_with(self, request: Request, model: BaseModel) -> Response:
        """A body already built: its ETag is its hash (saves the transfer, not the work)."""
        body = model.model_dump_json().encode()
        etag = self.etag(hashlib.blake2b(body, digest_size=16).hexdigest())
        if etag in _held(request):
            return Response(status_code=304, headers={**_HEADERS, "ETag": etag})
        return _json(body, etag)

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
