"""The three rate tables (DESIGN.md section 3): customer, callshop and reseller rates.

`reseller_id` and `group_id` are 0 for "applies to all" (not NULL: a unique key must see the
scope), hence no foreign keys; the rate service checks they name existing rows.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import MONEY, Base, created_at


class RateColumns:
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dialprefix: Mapped[str] = mapped_column(String(32), nullable=False)
    numlen: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    destination: Mapped[str] = mapped_column(
        String(100), nullable=False, default="", server_default=""
    )
    connectcharge: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    initblock: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    rateinitial: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    billingblock: Mapped[int] = mapped_column(
        Integer, nullable=False, default=60, server_default="60"
    )
    reseller_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    created_at: Mapped[datetime] = created_at()


def rate_checks() -> tuple[CheckConstraint, ...]:
    """The database's last line of defence; the rate service reports bad rows first."""
    return (
        CheckConstraint("numlen >= 0", name="numlen"),
        CheckConstraint("connectcharge >= 0 AND rateinitial >= 0", name="money"),
        CheckConstraint("initblock >= 0 AND billingblock >= 1", name="blocks"),
    )


class CustomerRate(RateColumns, Base):
    """What the booth customer pays the callshop (`credit` of a CDR)."""

    __tablename__ = "customer_rates"

    group_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("dialprefix", "numlen", "reseller_id", "group_id"),
        Index(None, "reseller_id", "group_id"),
        *rate_checks(),
    )


class CallshopRate(RateColumns, Base):
    """What the callshop (group) pays its reseller (`callshopcredit` of a CDR)."""

    __tablename__ = "callshop_rates"

    group_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")

    __table_args__ = (
        UniqueConstraint("dialprefix", "numlen", "reseller_id", "group_id"),
        Index(None, "reseller_id", "group_id"),
        *rate_checks(),
    )


class ResellerRate(RateColumns, Base):
    """What the reseller pays the system owner (`resellercredit` of a CDR). No group scope."""

    __tablename__ = "reseller_rates"
    __table_args__ = (
        UniqueConstraint("dialprefix", "numlen", "reseller_id"),
        Index(None, "reseller_id"),
        *rate_checks(),
    )
