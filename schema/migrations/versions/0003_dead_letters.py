"""dead letters: ended calls settlement could not write as CDRs (issue 12, point 2)

Revision ID: 0003_dead_letters
Revises: 0002_a1_session_versions
Create Date: 2026-12-01 23:59:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_dead_letters"
down_revision = "0002_a1_session_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_key", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("clid_id", sa.Integer(), nullable=True),
        sa.Column("credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False),
        sa.Column(
            "callshop_credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "reseller_credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column("raw_record", sa.Text(), nullable=False),
        sa.Column("raw_meta", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("needs_review", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("call_key", name=op.f("uq_dead_letters_call_key")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letters_needs_review_created_at"),
            ["needs_review", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("dead_letters")
