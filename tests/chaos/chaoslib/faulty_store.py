"""A store that fails on purpose (test-only): each call of a chosen Store method, and each
journal commit, raises StoreError at a seeded rate, as a database that drops connections
or refuses writes would.

A spec names the seed, the rates and where faults are logged:
``seed=7,commit=0.05,lost_ack=0.02,update_run=0.2,log=/tmp/faults.txt``.
``commit`` fails a journal commit before it is written; ``lost_ack`` writes it and then
fails (the acknowledgement was lost: the rows are there, the caller hears an error).
Any other name is a Store method (``get_run``, ``update_run``, ``actions_of_parent``...).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Any

from heddle._errors import StoreError
from heddle._sdk.config import get_session
from heddle._store import Store, WriteBatch

COMMIT = "commit"
LOST_ACK = "lost_ack"


class Faults:
    """Seeded decisions, and a log line for every fault injected."""

    def __init__(self, spec: str) -> None:
        self.rates: dict[str, float] = {}
        self.log_path: str | None = None
        seed = 0
        for item in spec.split(","):
            name, _, value = item.strip().partition("=")
            if name == "seed":
                seed = int(value)
            elif name == "log":
                self.log_path = value
            elif name:
                rate = float(value)
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"fault rate for {name} must be in [0, 1], got {value}")
                self.rates[name] = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def hit(self, name: str) -> bool:
        rate = self.rates.get(name)
        if not rate:
            return False
        with self._lock:
            fault = self._rng.random() < rate
        if fault and self.log_path:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{name} {os.getpid()}\n".encode())
            finally:
                os.close(fd)
        return fault

    def error(self, name: str) -> StoreError:
        return StoreError(f"store (chaos): cannot {name}: injected fault")


class FaultyWriter:
    """A journal writer whose commits fail at the spec's rates."""

    def __init__(self, writer: Any, faults: Faults) -> None:
        self._writer = writer
        self._faults = faults

    def try_write(self, batch: WriteBatch, *, retrying: bool = False) -> None:
        if batch and self._faults.hit(COMMIT):
            raise self._faults.error("record actions")
        self._writer.try_write(batch, retrying=retrying)
        if batch and self._faults.hit(LOST_ACK):
            raise self._faults.error("record actions (the commit landed, its answer was lost)")

    def write(self, batch: WriteBatch, *, retrying: bool = False) -> None:
        self.try_write(batch, retrying=retrying)

    def __getattr__(self, name: str) -> Any:
        # fence, fence_with, close: the real writer's.
        return getattr(self._writer, name)


class FaultyStore:
    """Stands in for a Store: the methods named in the spec fail at their rates."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self._store = store
        self._faults = faults

    def writer(self) -> FaultyWriter:
        return FaultyWriter(self._store.writer(), self._faults)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self._faults.rates or not callable(attr):
            return attr
        faults = self._faults

        def faulty(*args: Any, **kwargs: Any) -> Any:
            if faults.hit(name):
                raise faults.error(name)
            return attr(*args, **kwargs)

        return faulty


def install(spec: str, session_getter: Callable[[], Any] = get_session) -> FaultyStore:
    """Put a faulty store in front of the current session's store."""
    session = session_getter()
    faulty = FaultyStore(session.store, Faults(spec))
    session.store = faulty
    return faulty
