"""The store's tables: runs, actions, attempts, the cache and run events.

Times are unix seconds (float) so SQLite and PostgreSQL agree without time-zone
handling. Literals are opaque bytes produced by the runtime (inline value or blob key).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("root_task", String(300), nullable=False),
    Column("root_action_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("program", Text, nullable=False),
    Column("inputs", LargeBinary, nullable=False),
    Column("output", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("executor", String(32), nullable=False),
    Column("owner", String(200), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("abort_requested", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # Bumped by each takeover (recover): a driver's writes check it (fencing).
    Column("generation", Integer, nullable=False, server_default="0"),
    Index("ix_runs_created_at", "created_at"),
    Index("ix_runs_status", "status"),
)

actions = Table(
    "actions",
    metadata,
    # Clustered by run: a run's actions sit together, which keeps each group commit
    # to a few pages and serves every per-run query without a secondary index.
    Column("run_id", String(40), primary_key=True),
    Column("id", String(40), primary_key=True),
    Column("parent_id", String(40), nullable=True),
    Column("seq", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("task_name", String(300), nullable=False),
    Column("task_version", String(40), nullable=False),
    Column("group_name", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("cached", Integer, nullable=False),
    Column("cache_key", String(80), nullable=True),
    Column("inputs", LargeBinary, nullable=True),
    Column("output", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("queued_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    # A cache hit: the run and action that computed the output.
    Column("source_run_id", String(40), nullable=True),
    Column("source_action_id", String(40), nullable=True),
    # JSON: the tasks and traces its output depended on, with their versions.
    Column("deps", Text, nullable=True),
    sqlite_with_rowid=False,
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("action_id", String(40), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("task_version", String(40), nullable=False),
    Column("worker", String(200), nullable=True),
    Column("error", Text, nullable=True),
    Column("output", LargeBinary, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("cpu_seconds", Float, nullable=True),
    Column("peak_rss", BigInteger, nullable=True),
    # When the attempt began waiting for resources; started_at is when its body started.
    Column("queued_at", Float, nullable=True),
    sqlite_with_rowid=False,
)

cache_entries = Table(
    "cache_entries",
    metadata,
    Column("key", String(80), primary_key=True),
    Column("task_name", String(300), nullable=False),
    Column("output", LargeBinary, nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("action_id", String(40), nullable=False),
    Column("created_at", Float, nullable=False),
    # JSON: the tasks and traces the cached call made, with their versions.
    Column("deps", Text, nullable=True),
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("action_id", String(40), nullable=True),
    Column("message", Text, nullable=False),
    Index("ix_run_events_run", "run_id", "id"),
)
