"""The output cache as the controller uses it: keys, batched lookups, shared computations.

Lookups made in one turn of the event loop share one query; identical calls that
miss while one of them computes wait for that one instead of computing again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from heddle._runtime.calls import PreparedCall
from heddle._runtime.ids import cache_key, input_hash
from heddle._runtime.literals import LiteralStore
from heddle._store import Store


def cache_key_of(call: PreparedCall) -> str | None:
    """The call's cache key, or None if its task is not cached."""
    cache = call.spec.cache
    if cache is None:
        return None
    in_hash = call.in_hash
    if cache.ignored_inputs:
        # Inputs are encoded as one list in parameter order: drop the ignored positions.
        names = call.spec.param_names
        values = msgspec.msgpack.decode(call.encoded_inputs)
        kept = [v for n, v in zip(names, values, strict=True) if n not in cache.ignored_inputs]
        in_hash = input_hash(msgspec.msgpack.encode(kept))
    return cache_key(call.spec.name, cache.version or call.spec.version, in_hash)


class OutputCache:
    """Cached outputs of one run's controller (stored ones and ones being computed)."""

    def __init__(
        self, store: Store, literals: LiteralStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._literals = literals
        self._loop = loop
        self._computing: dict[str, asyncio.Future[bytes]] = {}
        self._wanted: dict[str, list[asyncio.Future[bytes | None]]] = {}

    async def find(self, key: str) -> bytes | None:
        """A stored output for ``key``, or the output of a computation of it in flight."""
        hit = await self._lookup(key)
        pending = self._computing.get(key)
        if hit is None and pending is not None:
            try:
                hit = await asyncio.shield(pending)
            except Exception:
                hit = None  # that computation failed: the caller computes its own
        return hit

    async def compute(self, key: str, make: Callable[[], Awaitable[bytes]]) -> bytes:
        """Run ``make`` as the computation others with the same key may wait for."""
        mine: asyncio.Future[bytes] = self._loop.create_future()
        self._computing[key] = mine
        try:
            out = await make()
            mine.set_result(out)
            return out
        except BaseException as exc:
            mine.set_exception(exc)
            mine.exception()  # mark retrieved: there may be no waiters
            raise
        finally:
            if self._computing.get(key) is mine:
                del self._computing[key]

    async def _lookup(self, key: str) -> bytes | None:
        fut: asyncio.Future[bytes | None] = self._loop.create_future()
        if not self._wanted:
            self._loop.call_soon(self._read)
        self._wanted.setdefault(key, []).append(fut)
        literal = await fut
        return None if literal is None else self._literals.from_literal(literal)

    def _read(self) -> None:
        wanted, self._wanted = self._wanted, {}
        try:
            found = self._store.cache_get_many(list(wanted))
        except Exception as exc:
            for futs in wanted.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(exc)
            return
        for key, futs in wanted.items():
            for f in futs:
                if not f.done():
                    f.set_result(found.get(key))
