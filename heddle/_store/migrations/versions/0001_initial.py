"""Initial schema: runs, actions, attempts, cache entries.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("root_task", sa.String(300), nullable=False),
        sa.Column("root_action_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("program", sa.Text, nullable=False),
        sa.Column("inputs", sa.LargeBinary, nullable=False),
        sa.Column("output", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("executor", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", sa.Float, nullable=True),
        sa.Column("abort_requested", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "actions",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("parent_id", sa.String(40), nullable=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("task_name", sa.String(300), nullable=False),
        sa.Column("task_version", sa.String(40), nullable=False),
        sa.Column("group_name", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cached", sa.Integer, nullable=False),
        sa.Column("cache_key", sa.String(80), nullable=True),
        sa.Column("inputs", sa.LargeBinary, nullable=True),
        sa.Column("output", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("queued_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "attempts",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("action_id", sa.String(40), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task_version", sa.String(40), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("output", sa.LargeBinary, nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=True),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("task_name", sa.String(300), nullable=False),
        sa.Column("output", sa.LargeBinary, nullable=False),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("action_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_entries")
    op.drop_table("attempts")
    op.drop_table("actions")
    op.drop_table("runs")
