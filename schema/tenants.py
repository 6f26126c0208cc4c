"""The credit hierarchy (reseller -> account group -> clid) and back-office accounts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from schema.base import LIMIT_TYPES, MONEY, MULTIPLE, Base, choice, created_at, money

ROLES = ("admin", "reseller", "groupadmin", "operator")
CLID_KINDS = ("booth", "extension", "card")


class CreditLevel:
    """Columns every level of the hierarchy has (DESIGN.md section 2).

    curcredit is credit used so far: a charge (money received) lowers it, a call or a refund
    raises it. Available credit = creditlimit - curcredit. The credit_* columns are lifetime
    totals of the three prices of this level's calls.
    """

    creditlimit: Mapped[Decimal] = money()
    curcredit: Mapped[Decimal] = money()
    credit_clid: Mapped[Decimal] = money()
    credit_group: Mapped[Decimal] = money()
    credit_reseller: Mapped[Decimal] = money()
    billing_time: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = created_at()

    @declared_attr
    def limit_type(cls) -> Mapped[str]:
        return mapped_column(
            choice("limit_type", *LIMIT_TYPES),
            nullable=False,
            default="none",
            server_default="none",
        )


class Reseller(CreditLevel, Base):
    __tablename__ = "resellers"
    __table_args__ = (CheckConstraint("multiple >= 0", name="multiple_not_negative"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), nullable=False, unique=True)
    accountcode: Mapped[str] = mapped_column(
        String(40), nullable=False, default="", server_default=""
    )
    allow_callback: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("0")
    )
    multiple: Mapped[Decimal] = mapped_column(
        MULTIPLE, nullable=False, default=Decimal(1), server_default="1"
    )

    groups: Mapped[list[AccountGroup]] = relationship(back_populates="reseller")

    def __str__(self) -> str:  # how the back office names it (dropdowns, lists)
        return self.name


class AccountGroup(CreditLevel, Base):
    """A callshop (or an enterprise department): booths, operators, its own prices."""

    __tablename__ = "account_groups"
    __table_args__ = (
        CheckConstraint(
            "group_multiple >= 0 AND customer_multiple >= 0", name="multiples_not_negative"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reseller_id: Mapped[int] = mapped_column(ForeignKey("resellers.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(60), nullable=False, unique=True)
    title: Mapped[str] = mapped_column(String(120), nullable=False, default="", server_default="")
    tagline: Mapped[str] = mapped_column(String(200), nullable=False, default="", server_default="")
    logo_path: Mapped[str | None] = mapped_column(String(255))
    logo_shown: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("0")
    )
    accountcode: Mapped[str] = mapped_column(
        String(40), nullable=False, default="", server_default=""
    )
    allow_callback: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("0")
    )
    group_multiple: Mapped[Decimal] = mapped_column(
        MULTIPLE, nullable=False, default=Decimal(1), server_default="1"
    )
    customer_multiple: Mapped[Decimal] = mapped_column(
        MULTIPLE, nullable=False, default=Decimal(1), server_default="1"
    )

    reseller: Mapped[Reseller] = relationship(back_populates="groups")
    clids: Mapped[list[Clid]] = relationship(back_populates="group")

    def __str__(self) -> str:
        return self.name


class Clid(CreditLevel, Base):
    """Who pays a call: a callshop booth, an enterprise extension or a prepaid card.

    `clid` is matched against the payer field of the call (caller id number, channel peer or
    accountcode, by setting). `deposit` is the operator's booth deposit: when set, the booth's
    unbilled calls plus the running call may not exceed it (NULL = no deposit).
    """

    __tablename__ = "clids"
    __table_args__ = (CheckConstraint("deposit IS NULL OR deposit >= 0", name="deposit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("account_groups.id"), nullable=False, index=True
    )
    clid: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)
    pin: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(
        choice("clid_kind", *CLID_KINDS), nullable=False, default="booth", server_default="booth"
    )
    display: Mapped[str] = mapped_column(String(60), nullable=False, default="", server_default="")
    accountcode: Mapped[str] = mapped_column(
        String(40), nullable=False, default="", server_default=""
    )
    shown: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("1")
    )
    locked: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=text("0")
    )
    deposit: Mapped[Decimal | None] = mapped_column(MONEY)
    # Raised to end every portal session of this booth user (logout): admin.auth.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )

    group: Mapped[AccountGroup] = relationship(back_populates="clids")

    def __str__(self) -> str:
        return f"{self.clid} {self.display}".strip()


class Account(Base):
    """A back-office login. Role scoping: a reseller account has reseller_id; groupadmin and
    operator accounts have group_id (and the group's reseller_id); admin has neither."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(
            "(role = 'admin' AND reseller_id IS NULL AND group_id IS NULL)"
            " OR (role = 'reseller' AND reseller_id IS NOT NULL AND group_id IS NULL)"
            " OR (role IN ('groupadmin', 'operator') AND reseller_id IS NOT NULL"
            " AND group_id IS NOT NULL)",
            name="role_scope",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(choice("account_role", *ROLES), nullable=False)
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("resellers.id"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("account_groups.id"), index=True)
    language: Mapped[str] = mapped_column(
        String(8), nullable=False, default="en", server_default="en"
    )
    active: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=True, server_default=text("1")
    )
    created_at: Mapped[datetime] = created_at()
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Raised to end every session of this account (logout, password change): admin.auth.
    session_version: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )

    reseller: Mapped[Reseller | None] = relationship()
    group: Mapped[AccountGroup | None] = relationship()

    def __str__(self) -> str:
        return self.username
