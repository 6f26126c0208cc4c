"""Ended calls (CDRs, the ledger of call prices) and callback requests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import MONEY, MULTIPLE, Base, choice, created_at, money

# Microsecond times on MariaDB (its DATETIME drops fractions by default).
PRECISE_TIME = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BIG_ID = BigInteger().with_variant(Integer, "sqlite")

LEGS = ("booth", "a", "b")
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION")
BILLING_STATUSES = ("UNBILLED", "BILLED")
PAYMENTS = ("cash", "credit_card", "debit_card", "promotion", "other")
CALLBACK_STATUSES = ("requested", "ringing", "connected", "ended", "failed")


class Cdr(Base):
    """One billed leg of one call, written once by settlement (idempotent on uniqueid + leg).

    credit / callshop_credit / reseller_credit are the customer, callshop and reseller prices.
    clid_id, group_id and reseller_id are NULL when no clid matched the payer field (the call is
    recorded but not billed). billing_status goes UNBILLED -> BILLED at the booth check-out.
    """

    __tablename__ = "cdrs"
    __table_args__ = (
        UniqueConstraint("uniqueid", "leg"),
        Index(None, "calldate"),
        Index(None, "group_id", "calldate"),
        Index(None, "reseller_id", "calldate"),
        Index(None, "clid_id", "billing_status", "calldate"),
        Index(None, "billing_status", "calldate"),
        Index(None, "linkedid"),
        CheckConstraint("billsec >= 0 AND duration >= 0", name="seconds"),
        CheckConstraint("discount >= 0 AND discount <= 1", name="discount"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), nullable=False)
    leg: Mapped[str] = mapped_column(
        choice("cdr_leg", *LEGS), nullable=False, default="booth", server_default="booth"
    )
    linkedid: Mapped[str] = mapped_column(String(64), nullable=False, default="", server_default="")
    calldate: Mapped[datetime] = mapped_column(PRECISE_TIME, nullable=False)
    answered_at: Mapped[datetime | None] = mapped_column(PRECISE_TIME)
    ended_at: Mapped[datetime | None] = mapped_column(PRECISE_TIME)
    src: Mapped[str] = mapped_column(String(80), nullable=False, default="", server_default="")
    dst: Mapped[str] = mapped_column(String(80), nullable=False, default="", server_default="")
    rated_number: Mapped[str] = mapped_column(
        String(80), nullable=False, default="", server_default=""
    )
    channel: Mapped[str] = mapped_column(String(128), nullable=False, default="", server_default="")
    dstchannel: Mapped[str] = mapped_column(
        String(128), nullable=False, default="", server_default=""
    )
    accountcode: Mapped[str] = mapped_column(
        String(40), nullable=False, default="", server_default=""
    )
    clid_id: Mapped[int | None] = mapped_column(ForeignKey("clids.id"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("account_groups.id"))
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"))
    duration: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    billsec: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    disposition: Mapped[str] = mapped_column(
        choice("cdr_disposition", *DISPOSITIONS), nullable=False
    )
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_cause_text: Mapped[str] = mapped_column(
        String(64), nullable=False, default="", server_default=""
    )
    destination: Mapped[str] = mapped_column(
        String(100), nullable=False, default="", server_default=""
    )
    # The rate rows used (no foreign key: a rate may be deleted later; rate_memo keeps its text).
    customer_rate_id: Mapped[int | None] = mapped_column(Integer)
    callshop_rate_id: Mapped[int | None] = mapped_column(Integer)
    reseller_rate_id: Mapped[int | None] = mapped_column(Integer)
    rate_memo: Mapped[str] = mapped_column(
        String(255), nullable=False, default="", server_default=""
    )
    credit: Mapped[Decimal] = money()
    callshop_credit: Mapped[Decimal] = money()
    reseller_credit: Mapped[Decimal] = money()
    billing_status: Mapped[str] = mapped_column(
        choice("cdr_billing", *BILLING_STATUSES),
        nullable=False,
        default="UNBILLED",
        server_default="UNBILLED",
    )
    payment: Mapped[str | None] = mapped_column(choice("cdr_payment", *PAYMENTS))
    discount: Mapped[Decimal] = mapped_column(
        MULTIPLE, nullable=False, default=Decimal(0), server_default="0"
    )
    free_call: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("0")
    )
    note: Mapped[str] = mapped_column(String(255), nullable=False, default="", server_default="")
    billed_at: Mapped[datetime | None] = mapped_column(DateTime)
    billed_by: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    # Why a person should look at this call (no rate, unknown payer, ended while disconnected).
    review_reason: Mapped[str] = mapped_column(
        String(64), nullable=False, default="", server_default=""
    )
    settled_at: Mapped[datetime] = created_at()


class Callback(Base):
    """A two-leg dial-back started from the booth page or the back office."""

    __tablename__ = "callbacks"
    __table_args__ = (Index(None, "group_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("account_groups.id"), nullable=False)
    clid_id: Mapped[int | None] = mapped_column(ForeignKey("clids.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    origin_number: Mapped[str] = mapped_column(String(80), nullable=False)  # leg A: rung first
    destination_number: Mapped[str] = mapped_column(String(80), nullable=False)  # leg B
    credit_limit: Mapped[Decimal | None] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(
        choice("callback_status", *CALLBACK_STATUSES),
        nullable=False,
        default="requested",
        server_default="requested",
    )
    action_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = created_at()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
