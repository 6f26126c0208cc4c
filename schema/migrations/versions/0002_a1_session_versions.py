"""session versions: a counter per account and per booth user, raised to end their sessions

Revision ID: 0002_a1_session_versions
Revises: 0001
Create Date: 2026-12-02 00:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_a1_session_versions"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("accounts", "clids"):
        op.add_column(
            table,
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False),
        )


def downgrade() -> None:
    for table in ("accounts", "clids"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("session_version")
