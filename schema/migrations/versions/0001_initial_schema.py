"""initial schema: the whole domain (ORIGINAL.md section 2, modernised)

Revision ID: 0001
Revises:
Create Date: 2026-11-26 09:39:14.101193
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callshop_rates",
        sa.Column("group_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dialprefix", sa.String(length=32), nullable=False),
        sa.Column("numlen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("destination", sa.String(length=100), server_default="", nullable=False),
        sa.Column("connectcharge", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("initblock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rateinitial", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("billingblock", sa.Integer(), server_default="60", nullable=False),
        sa.Column("reseller_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "connectcharge >= 0 AND rateinitial >= 0", name=op.f("ck_callshop_rates_money")
        ),
        sa.CheckConstraint(
            "initblock >= 0 AND billingblock >= 1", name=op.f("ck_callshop_rates_blocks")
        ),
        sa.CheckConstraint("numlen >= 0", name=op.f("ck_callshop_rates_numlen")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callshop_rates")),
        sa.UniqueConstraint(
            "dialprefix",
            "numlen",
            "reseller_id",
            "group_id",
            name=op.f("uq_callshop_rates_dialprefix_numlen_reseller_id_group_id"),
        ),
    )
    with op.batch_alter_table("callshop_rates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callshop_rates_reseller_id_group_id"),
            ["reseller_id", "group_id"],
            unique=False,
        )

    op.create_table(
        "customer_rates",
        sa.Column("group_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dialprefix", sa.String(length=32), nullable=False),
        sa.Column("numlen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("destination", sa.String(length=100), server_default="", nullable=False),
        sa.Column("connectcharge", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("initblock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rateinitial", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("billingblock", sa.Integer(), server_default="60", nullable=False),
        sa.Column("reseller_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "connectcharge >= 0 AND rateinitial >= 0", name=op.f("ck_customer_rates_money")
        ),
        sa.CheckConstraint(
            "initblock >= 0 AND billingblock >= 1", name=op.f("ck_customer_rates_blocks")
        ),
        sa.CheckConstraint("numlen >= 0", name=op.f("ck_customer_rates_numlen")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_rates")),
        sa.UniqueConstraint(
            "dialprefix",
            "numlen",
            "reseller_id",
            "group_id",
            name=op.f("uq_customer_rates_dialprefix_numlen_reseller_id_group_id"),
        ),
    )
    with op.batch_alter_table("customer_rates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_rates_reseller_id_group_id"),
            ["reseller_id", "group_id"],
            unique=False,
        )

    op.create_table(
        "reseller_rates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dialprefix", sa.String(length=32), nullable=False),
        sa.Column("numlen", sa.Integer(), server_default="0", nullable=False),
        sa.Column("destination", sa.String(length=100), server_default="", nullable=False),
        sa.Column("connectcharge", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("initblock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rateinitial", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("billingblock", sa.Integer(), server_default="60", nullable=False),
        sa.Column("reseller_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "connectcharge >= 0 AND rateinitial >= 0", name=op.f("ck_reseller_rates_money")
        ),
        sa.CheckConstraint(
            "initblock >= 0 AND billingblock >= 1", name=op.f("ck_reseller_rates_blocks")
        ),
        sa.CheckConstraint("numlen >= 0", name=op.f("ck_reseller_rates_numlen")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reseller_rates")),
        sa.UniqueConstraint(
            "dialprefix",
            "numlen",
            "reseller_id",
            name=op.f("uq_reseller_rates_dialprefix_numlen_reseller_id"),
        ),
    )
    with op.batch_alter_table("reseller_rates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reseller_rates_reseller_id"), ["reseller_id"], unique=False
        )

    op.create_table(
        "resellers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("accountcode", sa.String(length=40), server_default="", nullable=False),
        sa.Column("allow_callback", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("multiple", sa.Numeric(precision=8, scale=4), server_default="1", nullable=False),
        sa.Column(
            "creditlimit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "curcredit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_clid", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_group", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_reseller", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column("billing_time", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "limit_type",
            sa.Enum(
                "none",
                "prepaid",
                "postpaid",
                name="limit_type",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="none",
            nullable=False,
        ),
        sa.CheckConstraint("multiple >= 0", name=op.f("ck_resellers_multiple_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resellers")),
        sa.UniqueConstraint("name", name=op.f("uq_resellers_name")),
    )
    op.create_table(
        "account_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reseller_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("title", sa.String(length=120), server_default="", nullable=False),
        sa.Column("tagline", sa.String(length=200), server_default="", nullable=False),
        sa.Column("logo_path", sa.String(length=255), nullable=True),
        sa.Column("logo_shown", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("accountcode", sa.String(length=40), server_default="", nullable=False),
        sa.Column("allow_callback", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "group_multiple", sa.Numeric(precision=8, scale=4), server_default="1", nullable=False
        ),
        sa.Column(
            "customer_multiple",
            sa.Numeric(precision=8, scale=4),
            server_default="1",
            nullable=False,
        ),
        sa.Column(
            "creditlimit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "curcredit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_clid", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_group", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_reseller", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column("billing_time", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "limit_type",
            sa.Enum(
                "none",
                "prepaid",
                "postpaid",
                name="limit_type",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="none",
            nullable=False,
        ),
        sa.CheckConstraint(
            "group_multiple >= 0 AND customer_multiple >= 0",
            name=op.f("ck_account_groups_multiples_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["reseller_id"], ["resellers.id"], name=op.f("fk_account_groups_reseller_id_resellers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_account_groups_name")),
    )
    with op.batch_alter_table("account_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_account_groups_reseller_id"), ["reseller_id"], unique=False
        )

    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=60), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "admin",
                "reseller",
                "groupadmin",
                "operator",
                name="account_role",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("language", sa.String(length=8), server_default="en", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "(role = 'admin' AND reseller_id IS NULL AND group_id IS NULL) OR (role = 'reseller' AND reseller_id IS NOT NULL AND group_id IS NULL) OR (role IN ('groupadmin', 'operator') AND reseller_id IS NOT NULL AND group_id IS NOT NULL)",
            name=op.f("ck_accounts_role_scope"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_accounts_group_id_account_groups")
        ),
        sa.ForeignKeyConstraint(
            ["reseller_id"], ["resellers.id"], name=op.f("fk_accounts_reseller_id_resellers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_accounts_username")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_accounts_reseller_id"), ["reseller_id"], unique=False)

    op.create_table(
        "clids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("clid", sa.String(length=80), nullable=False),
        sa.Column("pin", sa.String(length=20), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "booth",
                "extension",
                "card",
                name="clid_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="booth",
            nullable=False,
        ),
        sa.Column("display", sa.String(length=60), server_default="", nullable=False),
        sa.Column("accountcode", sa.String(length=40), server_default="", nullable=False),
        sa.Column("shown", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("locked", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("deposit", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column(
            "creditlimit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "curcredit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_clid", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_group", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "credit_reseller", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column("billing_time", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column(
            "limit_type",
            sa.Enum(
                "none",
                "prepaid",
                "postpaid",
                name="limit_type",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="none",
            nullable=False,
        ),
        sa.CheckConstraint("deposit IS NULL OR deposit >= 0", name=op.f("ck_clids_deposit")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_clids_group_id_account_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clids")),
        sa.UniqueConstraint("clid", name=op.f("uq_clids_clid")),
        sa.UniqueConstraint("pin", name=op.f("uq_clids_pin")),
    )
    with op.batch_alter_table("clids", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clids_group_id"), ["group_id"], unique=False)

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("clid_id", sa.Integer(), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("origin_number", sa.String(length=80), nullable=False),
        sa.Column("destination_number", sa.String(length=80), nullable=False),
        sa.Column("credit_limit", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "ringing",
                "connected",
                "ended",
                "failed",
                name="callback_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="requested",
            nullable=False,
        ),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_callbacks_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(["clid_id"], ["clids.id"], name=op.f("fk_callbacks_clid_id_clids")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_callbacks_group_id_account_groups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint("action_id", name=op.f("uq_callbacks_action_id")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callbacks_group_id_created_at"), ["group_id", "created_at"], unique=False
        )

    op.create_table(
        "cdrs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column(
            "leg",
            sa.Enum(
                "booth",
                "a",
                "b",
                name="cdr_leg",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="booth",
            nullable=False,
        ),
        sa.Column("linkedid", sa.String(length=64), server_default="", nullable=False),
        sa.Column(
            "calldate",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "answered_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=True,
        ),
        sa.Column(
            "ended_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=True,
        ),
        sa.Column("src", sa.String(length=80), server_default="", nullable=False),
        sa.Column("dst", sa.String(length=80), server_default="", nullable=False),
        sa.Column("rated_number", sa.String(length=80), server_default="", nullable=False),
        sa.Column("channel", sa.String(length=128), server_default="", nullable=False),
        sa.Column("dstchannel", sa.String(length=128), server_default="", nullable=False),
        sa.Column("accountcode", sa.String(length=40), server_default="", nullable=False),
        sa.Column("clid_id", sa.Integer(), nullable=True),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("reseller_id", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Integer(), server_default="0", nullable=False),
        sa.Column("billsec", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "disposition",
            sa.Enum(
                "ANSWERED",
                "NO ANSWER",
                "BUSY",
                "FAILED",
                "CONGESTION",
                name="cdr_disposition",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("hangup_cause_text", sa.String(length=64), server_default="", nullable=False),
        sa.Column("destination", sa.String(length=100), server_default="", nullable=False),
        sa.Column("customer_rate_id", sa.Integer(), nullable=True),
        sa.Column("callshop_rate_id", sa.Integer(), nullable=True),
        sa.Column("reseller_rate_id", sa.Integer(), nullable=True),
        sa.Column("rate_memo", sa.String(length=255), server_default="", nullable=False),
        sa.Column("credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False),
        sa.Column(
            "callshop_credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "reseller_credit", sa.Numeric(precision=18, scale=6), server_default="0", nullable=False
        ),
        sa.Column(
            "billing_status",
            sa.Enum(
                "UNBILLED",
                "BILLED",
                name="cdr_billing",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="UNBILLED",
            nullable=False,
        ),
        sa.Column(
            "payment",
            sa.Enum(
                "cash",
                "credit_card",
                "debit_card",
                "promotion",
                "other",
                name="cdr_payment",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=True,
        ),
        sa.Column("discount", sa.Numeric(precision=8, scale=4), server_default="0", nullable=False),
        sa.Column("free_call", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("note", sa.String(length=255), server_default="", nullable=False),
        sa.Column("billed_at", sa.DateTime(), nullable=True),
        sa.Column("billed_by", sa.Integer(), nullable=True),
        sa.Column("review_reason", sa.String(length=64), server_default="", nullable=False),
        sa.Column("settled_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("billsec >= 0 AND duration >= 0", name=op.f("ck_cdrs_seconds")),
        sa.CheckConstraint("discount >= 0 AND discount <= 1", name=op.f("ck_cdrs_discount")),
        sa.ForeignKeyConstraint(
            ["billed_by"], ["accounts.id"], name=op.f("fk_cdrs_billed_by_accounts")
        ),
        sa.ForeignKeyConstraint(["clid_id"], ["clids.id"], name=op.f("fk_cdrs_clid_id_clids")),
        sa.ForeignKeyConstraint(
            ["group_id"], ["account_groups.id"], name=op.f("fk_cdrs_group_id_account_groups")
        ),
        sa.ForeignKeyConstraint(
            ["reseller_id"], ["resellers.id"], name=op.f("fk_cdrs_reseller_id_resellers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cdrs")),
        sa.UniqueConstraint("uniqueid", "leg", name=op.f("uq_cdrs_uniqueid_leg")),
    )
    with op.batch_alter_table("cdrs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_cdrs_billing_status_calldate"),
            ["billing_status", "calldate"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_cdrs_calldate"), ["calldate"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_cdrs_clid_id_billing_status_calldate"),
            ["clid_id", "billing_status", "calldate"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_cdrs_group_id_calldate"), ["group_id", "calldate"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_cdrs_linkedid"), ["linkedid"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_cdrs_reseller_id_calldate"), ["reseller_id", "calldate"], unique=False
        )

    op.create_table(
        "credit_operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("op_id", sa.String(length=64), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "reseller",
                "group",
                "clid",
                name="credit_level",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "charge",
                "refund",
                "set_limit",
                "set_limit_type",
                "lock",
                "unlock",
                "set_deposit",
                "checkout",
                name="credit_op_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.Numeric(precision=18, scale=6), nullable=True),
        sa.Column("value", sa.String(length=32), nullable=True),
        sa.Column("comment", sa.String(length=255), server_default="", nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_credit_operations_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_operations")),
        sa.UniqueConstraint("op_id", name=op.f("uq_credit_operations_op_id")),
    )
    with op.batch_alter_table("credit_operations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_operations_applied_at"), ["applied_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_credit_operations_level_target_id"), ["level", "target_id"], unique=False
        )

    op.create_table(
        "credit_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "reseller",
                "group",
                "clid",
                name="history_level",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reseller_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("clid_id", sa.Integer(), nullable=True),
        sa.Column(
            "operation",
            sa.Enum(
                "charge",
                "refund",
                name="history_op",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("balance_before", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("comment", sa.String(length=255), server_default="", nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_credit_history_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["clid_id"], ["clids.id"], name=op.f("fk_credit_history_clid_id_clids")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["account_groups.id"],
            name=op.f("fk_credit_history_group_id_account_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["operation_id"],
            ["credit_operations.id"],
            name=op.f("fk_credit_history_operation_id_credit_operations"),
        ),
        sa.ForeignKeyConstraint(
            ["reseller_id"], ["resellers.id"], name=op.f("fk_credit_history_reseller_id_resellers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_history")),
        sa.UniqueConstraint("operation_id", name=op.f("uq_credit_history_operation_id")),
    )
    with op.batch_alter_table("credit_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_credit_history_clid_id_created_at"),
            ["clid_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_credit_history_group_id_created_at"),
            ["group_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_credit_history_reseller_id_created_at"),
            ["reseller_id", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index a foreign key uses).
    op.drop_table("credit_history")
    op.drop_table("credit_operations")
    op.drop_table("cdrs")
    op.drop_table("callbacks")
    op.drop_table("clids")
    op.drop_table("accounts")
    op.drop_table("account_groups")
    op.drop_table("resellers")
    op.drop_table("reseller_rates")
    op.drop_table("customer_rates")
    op.drop_table("callshop_rates")
