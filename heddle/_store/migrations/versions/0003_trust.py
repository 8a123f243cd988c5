"""Fencing, cache provenance, honest queue time and run events.

- runs.generation: bumped by every takeover of a run (recover); a driver's writes
  check it, so a driver that lost its run cannot write over the new one.
- actions.source_run_id / source_action_id: where a cached output came from.
- attempts.queued_at: when the attempt began waiting for resources; started_at is
  when its body started (null until then).
- cache_entries.deps: the tasks and traces the cached call made, with their versions.
- run_events: what happened to a run besides its actions' states (recoveries,
  takeovers, self-healing of lost outputs), one row each.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("source_run_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("source_action_id", sa.String(40), nullable=True))
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("queued_at", sa.Float, nullable=True))
        # Null while the attempt waits for resources: its body has not started.
        batch.alter_column("started_at", existing_type=sa.Float, nullable=True)
    with op.batch_alter_table("cache_entries") as batch:
        batch.add_column(sa.Column("deps", sa.Text, nullable=True))
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("action_id", sa.String(40), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_run_events_run", "run_events", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_run_events_run", table_name="run_events")
    op.drop_table("run_events")
    with op.batch_alter_table("cache_entries") as batch:
        batch.drop_column("deps")
    with op.batch_alter_table("attempts") as batch:
        batch.alter_column("started_at", existing_type=sa.Float, nullable=False)
        batch.drop_column("queued_at")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("source_action_id")
        batch.drop_column("source_run_id")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("generation")
