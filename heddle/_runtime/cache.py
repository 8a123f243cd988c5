"""The output cache as the controller uses it: keys, dependencies, batched lookups, shared computations.

A cache key is (task name, task version plus the user code the task uses, inputs). A
task that calls tasks or traces also depends on their code: each cache entry records
every task and trace called in its subtree with its version, and a stored entry is
served only if each of them is still defined with that version.

Lookups made in one turn of the event loop share one query; identical calls that
miss while one of them computes wait for that one instead of computing again.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

import msgspec

from heddle._runtime import versions
from heddle._runtime.calls import PreparedCall
from heddle._runtime.fingerprint import code_fingerprint
from heddle._runtime.ids import cache_key, input_hash, source_version
from heddle._runtime.literals import LiteralStore
from heddle._runtime.spec import TaskSpec
from heddle._store import CacheEntry, Store

# One dependency: (kind, name, version), kind being versions.TASK or versions.TRACE.
Dep = tuple[str, str, str]


def key_version(spec: TaskSpec) -> str:
    """The version part of a task's cache key: its declared cache version if it has one,
    else its version and the user code it uses."""
    assert spec.cache is not None
    if spec.cache.version:
        return spec.cache.version
    return source_version(spec.version, code_fingerprint(spec.fn))


def encode_deps(deps: Iterable[Dep]) -> str | None:
    """Dependencies as stored (sorted JSON), or None when there are none."""
    items = sorted(deps)
    return json.dumps(items, separators=(",", ":")) if items else None


@functools.lru_cache(maxsize=4096)
def decode_deps(text: str | None) -> frozenset[Dep]:
    """Stored dependencies back as a set (raises ValueError when they are malformed)."""
    if not text:
        return frozenset()
    items = json.loads(text)
    if not isinstance(items, list) or not all(
        isinstance(d, list) and len(d) == 3 and all(isinstance(p, str) for p in d) for d in items
    ):
        raise ValueError(f"malformed cache dependencies: {text[:80]!r}")
    return frozenset((d[0], d[1], d[2]) for d in items)


def stale_dependency(
    deps_text: str | None,
    current: Callable[[str, str], str | None] = versions.current,
) -> Dep | None:
    """The first recorded dependency whose code the program no longer defines as it was
    (changed, or unknown here), or None when every one is unchanged."""
    try:
        deps = decode_deps(deps_text)
    except ValueError:
        return ("?", "?", deps_text or "")
    for dep in sorted(deps):
        kind, name, version = dep
        if current(kind, name) != version:
            return dep
    return None


class Dependencies:
    """What each action this controller runs has called so far, transitively: the tasks
    and traces its output depends on, with their versions."""

    def __init__(self) -> None:
        self._open: dict[str, set[Dep]] = {}
        # A task's dependency entry, once per spec per run (it hashes user code).
        self._of_spec: dict[int, tuple[TaskSpec, Dep]] = {}

    def of_task(self, spec: TaskSpec) -> Dep:
        known = self._of_spec.get(id(spec))
        if known is not None and known[0] is spec:
            return known[1]
        dep = (
            versions.TASK,
            spec.name,
            versions.dependency_version(spec.defined_version or spec.version, spec.fn),
        )
        self._of_spec[id(spec)] = (spec, dep)
        return dep

    def called_trace(self, parent_id: str, name: str, version: str) -> None:
        self._open.setdefault(parent_id, set()).add((versions.TRACE, name, version))

    def finished(
        self, parent_id: str | None, action_id: str, spec: TaskSpec, deps_text: str | None
    ) -> None:
        """A call ended (computed, a cache hit, replayed or failed): its task and what it
        depended on become dependencies of its caller."""
        leftover = self._open.pop(action_id, None)  # a failed call's children
        if parent_id is None:
            return
        into = self._open.setdefault(parent_id, set())
        into.add(self.of_task(spec))
        if deps_text:
            try:
                into |= decode_deps(deps_text)
            except ValueError:
                # Unreadable: the caller must never be served from the cache.
                into.add((versions.TASK, spec.name, "?"))
        if leftover:
            into |= leftover

    def close(self, action_id: str, extra: str | None = None) -> str | None:
        """The stored form of what an action that just succeeded depended on. ``extra``:
        what its body's own controller (in a Ray worker) recorded."""
        deps = self._open.pop(action_id, set())
        if extra:
            deps |= decode_deps(extra)
        return encode_deps(deps)


class CachedOutput(NamedTuple):
    """An output the cache can serve, and where it came from (one per hit: a NamedTuple
    is the cheapest immutable record)."""

    output: bytes  # encoded
    deps: str | None
    run_id: str
    action_id: str


class OutputCache:
    """Cached outputs of one run's controller (stored ones and ones being computed)."""

    def __init__(
        self, store: Store, literals: LiteralStore, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._literals = literals
        self._loop = loop
        self._computing: dict[str, asyncio.Future[CachedOutput]] = {}
        self._wanted: dict[str, list[asyncio.Future[CacheEntry | None]]] = {}
        # Key versions, once per spec per run (they hash user code).
        self._versions: dict[int, tuple[TaskSpec, str]] = {}
        self._checked: dict[str, bool] = {}

    def key_of(self, call: PreparedCall) -> str | None:
        """The call's cache key, or None if its task is not cached."""
        spec = call.spec
        cache = spec.cache
        if cache is None:
            return None
        known = self._versions.get(id(spec))
        if known is not None and known[0] is spec:
            version = known[1]
        else:
            version = key_version(spec)
            self._versions[id(spec)] = (spec, version)
        in_hash = call.in_hash
        if cache.ignored_inputs:
            # Inputs are encoded as one list in parameter order: drop the ignored positions.
            names = spec.param_names
            values = msgspec.msgpack.decode(call.encoded_inputs)
            kept = [v for n, v in zip(names, values, strict=True) if n not in cache.ignored_inputs]
            in_hash = input_hash(msgspec.msgpack.encode(kept))
        return cache_key(spec.name, version, in_hash)

    async def find(self, key: str) -> CachedOutput | None:
        """A stored output for ``key`` whose dependencies are unchanged, or the output of a
        computation of it in flight."""
        entry = await self._lookup(key)
        hit: CachedOutput | None = None
        # An entry whose dependencies changed is a miss: computed again, and replaced.
        if entry is not None and self._unchanged(entry.deps):
            output = self._literals.from_literal(entry.output)
            hit = CachedOutput(output, entry.deps, entry.run_id, entry.action_id)
        pending = self._computing.get(key)
        if hit is None and pending is not None:
            try:
                hit = await asyncio.shield(pending)
            except Exception:
                hit = None  # that computation failed: the caller computes its own
        return hit

    def _unchanged(self, deps: str | None) -> bool:
        """Whether every dependency is still defined as recorded (checked once per run
        for each set of dependencies: the program does not change during a run)."""
        if deps is None:
            return True
        ok = self._checked.get(deps)
        if ok is None:
            ok = self._checked[deps] = stale_dependency(deps) is None
        return ok

    async def compute(self, key: str, make: Callable[[], Awaitable[CachedOutput]]) -> CachedOutput:
        """Run ``make`` as the computation others with the same key may wait for."""
        mine: asyncio.Future[CachedOutput] = self._loop.create_future()
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

    async def _lookup(self, key: str) -> CacheEntry | None:
        fut: asyncio.Future[CacheEntry | None] = self._loop.create_future()
        if not self._wanted:
            self._loop.call_soon(self._read)
        self._wanted.setdefault(key, []).append(fut)
        return await fut

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
