"""Resource use per attempt: CPU seconds and peak RSS.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("cpu_seconds", sa.Float, nullable=True))
        batch.add_column(sa.Column("peak_rss", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("peak_rss")
        batch.drop_column("cpu_seconds")
