"""The store: runs, actions, attempts, cache entries and run events (SQLAlchemy over
SQLite or PostgreSQL)."""

from heddle._store.engine import store_backend
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
    RunEventKind,
    RunEventRecord,
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
    "RunEventKind",
    "RunEventRecord",
    "RunRecord",
    "Store",
    "WriteBatch",
    "sqlite_url",
    "store_backend",
]
