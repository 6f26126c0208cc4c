"""Back-office accounts: creation with hashed passwords and the role/scope rules."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from ops.errors import InvalidInput
from schema import Account
from schema.tenants import ROLES

MIN_PASSWORD_LENGTH = 10
# One rule for every way an account is made (back-office form, seed, `asterbill create-admin`):
# ASCII letters and digits and . _ - @, starting with a letter or digit. No blanks, markup,
# control or bidirectional characters, and no two names that the database's case- and
# accent-insensitive collation would take for one.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,59}")
USERNAME_RULE = (
    "a username has 1 to 60 characters: letters a-z, digits and . _ - @, "
    "starting with a letter or a digit"
)
LANGUAGES = {"en": "English", "zh": "简体中文"}


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InvalidInput(f"{USERNAME_RULE} (not {username!r})")
    return username


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidInput(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
    return language


def create_account(
    session: Session,
    username: str,
    password: str,
    role: str,
    reseller_id: int | None = None,
    group_id: int | None = None,
) -> Account:
    """Add an account; InvalidInput (nothing written) for a bad name, password or role."""
    check_username(username)
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
