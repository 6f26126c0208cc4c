"""Ended calls settlement could not write as CDRs, kept for a person to look at."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import Base, created_at, money


class DeadLetter(Base):
    """One ended call whose CDR could not be written (a field MySQL refuses, an impossible
    time): its raw Redis record and meta, the error, and its three prices.

    Its prices are added to the levels' balances like a CDR's (Redis already charged them
    live), so the ledger stays exact; `reconcile --check` counts them with the CDRs.
    `call_key` (sha256 of reseller id and call id) makes settling it idempotent."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index(None, "needs_review", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    call_id: Mapped[str] = mapped_column(String(255), nullable=False)  # cut to fit: raw has all
    reseller_id: Mapped[int | None] = mapped_column(Integer)
    group_id: Mapped[int | None] = mapped_column(Integer)
    clid_id: Mapped[int | None] = mapped_column(Integer)
    credit: Mapped[Decimal] = money()
    callshop_credit: Mapped[Decimal] = money()
    reseller_credit: Mapped[Decimal] = money()
    raw_record: Mapped[str] = mapped_column(Text, nullable=False)
    raw_meta: Mapped[str] = mapped_column(Text, nullable=False)
    error: Mapped[str] = mapped_column(Text, nullable=False)
    needs_review: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("1")
    )
    created_at: Mapped[datetime] = created_at()
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
