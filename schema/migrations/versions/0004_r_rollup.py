"""cdr rollup: hourly sums of the CDRs per report dimension, kept by settlement

Revision ID: 0004_r_rollup
Revises: 0003_dead_letters
Create Date: 2026-12-02 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_r_rollup"
down_revision = "0003_dead_letters"
branch_labels = None
depends_on = None

TOTAL = sa.Numeric(20, 6)


def upgrade() -> None:
    op.create_table(
        "cdr_rollup",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("clid_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=100), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("billing_status", sa.String(length=16), nullable=False),
        sa.Column("payment", sa.String(length=16), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("answered", sa.BigInteger(), nullable=False),
        sa.Column("billsec", sa.BigInteger(), nullable=False),
        sa.Column("billed_minutes", sa.BigInteger(), nullable=False),
        sa.Column("credit", TOTAL, nullable=False),
        sa.Column("callshop_credit", TOTAL, nullable=False),
        sa.Column("reseller_credit", TOTAL, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cdr_rollup"),
        sa.UniqueConstraint(
            "hour",
            "reseller_id",
            "group_id",
            "clid_id",
            "destination",
            "disposition",
            "billing_status",
            "payment",
            "operator_id",
            name="uq_cdr_rollup_key",
        ),
    )
    op.create_index("ix_cdr_rollup_reseller_id_hour", "cdr_rollup", ["reseller_id", "hour"])
    op.create_index("ix_cdr_rollup_group_id_hour", "cdr_rollup", ["group_id", "hour"])
    # CDRs settled before this revision: the rollup starts equal to them.
    from workers.rollup import rebuild

    rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("cdr_rollup")
