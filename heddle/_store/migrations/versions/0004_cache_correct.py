"""What an action's output depended on: actions.deps.

JSON: the tasks and traces called in the action's subtree, with their versions. A
replayed or cached child carries it into its caller's cache entry, so a cached value is
never served after the code of anything it called changed.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("deps", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("deps")
