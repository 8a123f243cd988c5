"""What an action's output depended on: actions.deps; cache entries that cannot say are dropped.

actions.deps is JSON: the tasks and traces called in the action's subtree, with their
versions. A replayed or cached child carries it into its caller's cache entry, so a
cached value is never served after the code of anything it called changed.

Entries written before this revision never recorded what they called: an entry whose
action called tasks or traces is removed (it could be served after a callee changed);
entries of actions that called nothing stay valid.

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
    # Action ids are derived from their run id, so the action id alone names the action.
    op.execute(
        "DELETE FROM cache_entries WHERE deps IS NULL AND action_id IN "
        "(SELECT parent_id FROM actions WHERE parent_id IS NOT NULL)"
    )


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("deps")
