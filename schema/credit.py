"""Credit operations (idempotency record) and the credit history they write."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from schema.base import MONEY, Base, choice, created_at

LEVELS = ("reseller", "group", "clid")
OPERATIONS = (
    "charge",
    "refund",
    "set_limit",
    "set_limit_type",
    "lock",
    "unlock",
    "set_deposit",
    "checkout",
)


class CreditOperation(Base):
    """One credit operation, keyed by its operation id so that a replay applies once.

    It is written to MySQL first (with its history row), then applied to Redis with the same
    op_id; `applied_at` stays NULL until Redis confirmed, so the reconciler can re-apply it.
    """

    __tablename__ = "credit_operations"
    __table_args__ = (Index(None, "level", "target_id"), Index(None, "applied_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    op_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    level: Mapped[str] = mapped_column(choice("credit_level", *LEVELS), nullable=False)
    target_id: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(choice("credit_op_kind", *OPERATIONS), nullable=False)
    amount: Mapped[Decimal | None] = mapped_column(MONEY)
    value: Mapped[str | None] = mapped_column(String(32))  # e.g. the new limit type
    comment: Mapped[str] = mapped_column(String(255), nullable=False, default="", server_default="")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = created_at()
    applied_at: Mapped[datetime | None] = mapped_column(DateTime)


class CreditHistory(Base):
    """Read-only trail of money moved by hand: one row per charge or refund."""

    __tablename__ = "credit_history"
    __table_args__ = (
        Index(None, "reseller_id", "created_at"),
        Index(None, "group_id", "created_at"),
        Index(None, "clid_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("credit_operations.id"), nullable=False, unique=True
    )
    level: Mapped[str] = mapped_column(choice("history_level", *LEVELS), nullable=False)
    reseller_id: Mapped[int] = mapped_column(ForeignKey("resellers.id"), nullable=False)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("account_groups.id"))
    clid_id: Mapped[int | None] = mapped_column(ForeignKey("clids.id"))
    operation: Mapped[str] = mapped_column(choice("history_op", "charge", "refund"), nullable=False)
    balance_before: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    amount: Mapped[Decimal] = mapped_column(MONEY, nullable=False)
    comment: Mapped[str] = mapped_column(String(255), nullable=False, default="", server_default="")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    created_at: Mapped[datetime] = created_at()
