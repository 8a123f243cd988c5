"""The store: runs, actions, attempts and cache entries (SQLAlchemy over SQLite or PostgreSQL)."""

from heddle._store.records import (
    ABORTED,
    FAILED,
    FINAL_STATES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ActionRecord,
    AttemptRecord,
    CacheEntry,
    RunRecord,
    WriteBatch,
)
from heddle._store.store import Store, sqlite_url

__all__ = [
    "ABORTED",
    "FAILED",
    "FINAL_STATES",
    "QUEUED",
    "RUNNING",
    "SUCCEEDED",
    "ActionRecord",
    "AttemptRecord",
    "CacheEntry",
    "RunRecord",
    "Store",
    "WriteBatch",
    "sqlite_url",
]
