"""Riding out a lost database: which errors may pass, and how long to keep trying.

A ``RetryPolicy`` is plain logic (backoff delays and a deadline, with the clock and
sleep passed in), so it is tested, and driven with injected errors, without a
database. The Store applies it to each read and write; the journal applies it to its
group commits without blocking the event loop (see ``Outage``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

from heddle._errors import ConfigError

T = TypeVar("T")

OUTAGE_ENV = "HEDDLE_STORE_OUTAGE_SECONDS"
DEFAULT_OUTAGE_SECONDS = 60.0
# Opening a store waits less: a database that never answered is more likely misnamed.
OPEN_SECONDS = 10.0

# SQLSTATEs worth retrying besides class 08 (connection exceptions): the server is
# shutting down, crashed or starting up; too many connections; a serialization
# failure or deadlock (the transaction was rolled back and may simply be run again).
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "40001", "40P01"})
# SQLite: another connection holds the lock (after busy_timeout, or at once when
# waiting could deadlock); the transaction was rolled back and may be run again.
_SQLITE_BUSY_OR_LOCKED = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class Unavailable(Exception):
    """One try at the store failed for a reason that may pass; ``error`` is why.

    Internal to the store and the journal: a caller that gives up raises a
    StoreUnavailableError instead.
    """

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (from SQLAlchemy or straight from the DBAPI driver) means the
    database was unreachable for a moment, rather than that the statement was wrong."""
    if isinstance(exc, Unavailable):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if exc.orig is None:
            return False
        exc = exc.orig
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_BUSY_OR_LOCKED
    # psycopg raises errors without a SQLSTATE when the connection itself failed:
    # refused, closed, lost. (Imported only if the program already uses it.)
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff from ``first_delay`` up to ``max_delay`` (each delay shortened
    by up to ``jitter`` of itself, so many clients do not reconnect in step), for at most
    ``give_up_after`` seconds of continuous failure."""

    give_up_after: float = DEFAULT_OUTAGE_SECONDS
    first_delay: float = 0.05
    max_delay: float = 2.0
    factor: float = 2.0
    jitter: float = 0.2

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The default policy, with the outage limit from HEDDLE_STORE_OUTAGE_SECONDS."""
        raw = os.environ.get(OUTAGE_ENV)
        if raw is None or raw == "":
            return cls()
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:
            raise ConfigError(f"{OUTAGE_ENV}={raw!r} is not a number of seconds (>= 0)")
        return cls(give_up_after=seconds)

    def for_opening(self) -> RetryPolicy:
        """The policy for the first contact with a database: at most OPEN_SECONDS."""
        return dataclasses.replace(self, give_up_after=min(self.give_up_after, OPEN_SECONDS))

    def outage(
        self,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> Outage:
        """Start counting one outage (the first failed try happened just now)."""
        return Outage(self, clock, rand)

    def call(
        self,
        attempt: Callable[[bool], T],
        *,
        give_up: Callable[[BaseException, Outage], BaseException] | None = None,
        transient: Callable[[BaseException], bool] = is_transient,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> T:
        """``attempt(retrying)`` until it returns; a transient error is retried after a
        delay (``retrying`` is then True: the failed try may have landed), any other
        error is raised at once. Past the deadline, raises ``give_up(last, outage)``
        (by default the last error itself)."""
        outage: Outage | None = None
        while True:
            try:
                return attempt(outage is not None)
            except Exception as exc:
                if not transient(exc):
                    raise
                if outage is None:
                    outage = self.outage(clock, rand)
                delay = outage.next_delay()
                if delay is None:
                    if give_up is None:
                        raise
                    raise give_up(exc, outage) from exc
                sleep(delay)


class Outage:
    """One stretch of failed tries: the delay before each next try, until the policy's
    deadline, counted from the first failure."""

    def __init__(
        self, policy: RetryPolicy, clock: Callable[[], float], rand: Callable[[], float]
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rand = rand
        self.began = clock()
        self.tries = 1
        self._delay = policy.first_delay

    @property
    def elapsed(self) -> float:
        return self._clock() - self.began

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None: give up now."""
        left = self.policy.give_up_after - self.elapsed
        if left <= 0:
            return None
        delay = self._delay * (1.0 - self.policy.jitter * self._rand())
        self._delay = min(self._delay * self.policy.factor, self.policy.max_delay)
        self.tries += 1
        return min(delay, left)
