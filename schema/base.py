"""Declarative base, column types shared by every table, and constraint naming."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import DateTime, Enum, MetaData, Numeric
from sqlalchemy.orm import DeclarativeBase, mapped_column

# Stable constraint names, so migrations can drop and alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MONEY = Numeric(18, 6, asdecimal=True)
MULTIPLE = Numeric(8, 4, asdecimal=True)
LIMIT_TYPES = ("none", "prepaid", "postpaid")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def choice(name: str, *values: str) -> Enum:
    """A VARCHAR restricted by a CHECK constraint (portable across MariaDB and SQLite)."""
    return Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def money(default: str = "0", nullable: bool = False):
    return mapped_column(
        MONEY,
        nullable=nullable,
        default=Decimal(default),
        server_default=default if not nullable else None,
    )


def created_at():
    return mapped_column(DateTime, nullable=False, default=utcnow)
