"""Back-office accounts: creation with hashed passwords and the role/scope rules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from ops.errors import InvalidInput
from schema import Account
from schema.tenants import ROLES

MIN_PASSWORD_LENGTH = 10


def create_account(
    session: Session,
    username: str,
    password: str,
    role: str,
    reseller_id: int | None = None,
    group_id: int | None = None,
) -> Account:
    """Add an account; InvalidInput (nothing written) for a bad name, password or role."""
    username = username.strip()
    if not username or len(username) > 60 or not username.isprintable() or " " in username:
        raise InvalidInput("username must be 1-60 printable characters without spaces")
    _check_password(password)
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of: {', '.join(ROLES)}")
    if session.scalar(select(Account.id).where(Account.username == username)) is not None:
        raise InvalidInput(f"an account named {username!r} already exists")
    account = Account(
        username=username,
        password_hash=generate_password_hash(password),  # scrypt, salted
        role=role,
        reseller_id=reseller_id,
        group_id=group_id,
    )
    session.add(account)
    session.flush()
    return account


def set_password(account: Account, password: str) -> None:
    """A new password; every session of the account ends (a copied cookie stops working)."""
    _check_password(password)
    account.password_hash = generate_password_hash(password)
    account.session_version = (account.session_version or 0) + 1


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
