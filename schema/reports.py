"""The CDR rollup: per UTC hour and per every dimension a report filters or groups by, the
sums of the CDRs, kept by settlement in the CDRs' own transaction (workers/rollup.py).

Reports read this table, never the CDRs, so a report costs the rollup's size, not the call
count. Every dimension column is NOT NULL (0 or '' for "none"): a UNIQUE key treats NULLs as
distinct, and the upsert needs exactly one row per key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base

# Sums of up to millions of CDR prices: two more integer digits than one price.
TOTAL = Numeric(20, 6, asdecimal=True)
DIMENSIONS = (
    "hour",
    "reseller_id",
    "group_id",
    "clid_id",
    "destination",
    "disposition",
    "billing_status",
    "payment",
    "operator_id",
)
MEASURES = (
    "calls",
    "answered",
    "billsec",
    "billed_minutes",
    "credit",
    "callshop_credit",
    "reseller_credit",
)


class CdrRollup(Base):
    """Sums of the CDRs sharing one (UTC hour, reseller, shop, booth, destination,
    disposition, billing status, payment method, checking-out operator)."""

    __tablename__ = "cdr_rollup"
    __table_args__ = (
        UniqueConstraint(*DIMENSIONS, name="uq_cdr_rollup_key"),
        Index(None, "reseller_id", "hour"),
        Index(None, "group_id", "hour"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime, nullable=False)  # UTC, minutes zero
    reseller_id: Mapped[int] = mapped_column(Integer, nullable=False)  # 0: unknown payer
    group_id: Mapped[int] = mapped_column(Integer, nullable=False)
    clid_id: Mapped[int] = mapped_column(Integer, nullable=False)
    destination: Mapped[str] = mapped_column(String(100), nullable=False)
    disposition: Mapped[str] = mapped_column(String(16), nullable=False)
    billing_status: Mapped[str] = mapped_column(String(16), nullable=False)
    payment: Mapped[str] = mapped_column(String(16), nullable=False)  # '': not checked out
    operator_id: Mapped[int] = mapped_column(Integer, nullable=False)  # billed_by, 0: none
    calls: Mapped[int] = mapped_column(BigInteger, nullable=False)
    answered: Mapped[int] = mapped_column(BigInteger, nullable=False)
    billsec: Mapped[int] = mapped_column(BigInteger, nullable=False)
    billed_minutes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    credit: Mapped[Decimal] = mapped_column(TOTAL, nullable=False)
    callshop_credit: Mapped[Decimal] = mapped_column(TOTAL, nullable=False)
    reseller_credit: Mapped[Decimal] = mapped_column(TOTAL, nullable=False)
