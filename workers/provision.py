"""Tenant trees from a file (`asterbill seed`) and their configuration pushed into Redis.

A seed file (YAML or JSON) lists resellers, their groups (callshops) and clids (booths), with
limits and limit types, rate rows inline or from rate files, and back-office accounts (their
passwords read from environment variables, never from the file). Seeding is idempotent: rows
are found by name (resellers, groups) or number (clids) and updated, never duplicated; rates
are imported with replace. Everything lands in one MySQL transaction, then Redis gets the
levels, payers and rate books (`provision_redis`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from lua.credit import CreditEngine, Payer
from ops.errors import InvalidInput
from rating import ratefiles
from rating.book import RedisRateBook
from rating.money import parse_decimal, stored_micros, to_multiple
from rating.store import Target, import_rates, sync_all
from schema import Account, AccountGroup, Clid, Reseller
from schema.base import LIMIT_TYPES
from schema.tenants import CLID_KINDS

LEVEL_FIELDS = ("limit_type", "credit_limit")
# Every key a seed file may use, per entry (docs/seed.md); any other key is refused.
SEED_KEYS = {
    "file": {"resellers", "rates", "accounts"},
    "reseller": {"name", "multiple", "groups", *LEVEL_FIELDS},
    "group": {"name", "title", "tagline", "customer_multiple", "group_multiple", "clids"}
    | set(LEVEL_FIELDS),
    "clid": {"clid", "display", "kind", "locked", "deposit", *LEVEL_FIELDS},
    "rates": {"table", "reseller", "group", "file", "map", "rows"},
    "rate": set(ratefiles.FIELDS),
    "account": {"username", "role", "reseller", "group", "password_env", "password"},
}


def load_seed(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path.name} could not be read: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path.name}: expected a mapping with `resellers` and `rates`")
    return data


def seed(
    session: Session, data: dict, base_dir: Path, environ: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Create or update the tree in `data`; returns counts. InvalidInput names the entry.
    `environ` (default: the process environment) holds the accounts' passwords."""
    counts = {"resellers": 0, "groups": 0, "clids": 0, "rates": 0, "accounts": 0}
    _known_keys(data, "file", "the seed file")
    for r in data.get("resellers") or []:
        _known_keys(r, "reseller", f"reseller {r.get('name', '?') if isinstance(r, dict) else r}")
        reseller = _upsert(session, Reseller, "name", _text(r, "name", "reseller"))
        _level(reseller, r, f"reseller {reseller.name}")
        if "multiple" in r:
            reseller.multiple = Decimal(to_multiple(str(r["multiple"]))) / 10_000
        counts["resellers"] += 1
        for g in r.get("groups") or []:
            name = _text(g, "name", "group")
            _known_keys(g, "group", f"group {name}")
            group = _upsert(session, AccountGroup, "name", name, reseller=reseller)
            if group.reseller_id not in (None, reseller.id) and group.reseller is not reseller:
                raise InvalidInput(f"group {name} belongs to another reseller")
            group.reseller = reseller
            group.title = str(g.get("title", group.title or ""))[:120]
            group.tagline = str(g.get("tagline", group.tagline or ""))[:200]
            for key in ("customer_multiple", "group_multiple"):
                if key in g:
                    setattr(group, key, Decimal(to_multiple(str(g[key]))) / 10_000)
            _level(group, g, f"group {name}")
            counts["groups"] += 1
            for c in g.get("clids") or []:
                number = _text(c, "clid", f"clid of group {name}")
                _known_keys(c, "clid", f"clid {number}")
                clid = session.scalar(select(Clid).where(Clid.clid == number))
                if clid is None:
                    clid = Clid(clid=number, pin=_new_pin(session), group=group)
                    session.add(clid)
                clid.group = group
                clid.display = str(c.get("display", clid.display or number))[:60]
                clid.kind = str(c.get("kind", clid.kind or "booth"))
                if clid.kind not in CLID_KINDS:
                    raise InvalidInput(
                        f"clid {number}: kind {clid.kind!r} is not one of {', '.join(CLID_KINDS)}"
                    )
                # Left out, `locked` and `deposit` keep what the booth has (an operator's
                # lock or deposit survives a re-seed); a new booth starts unlocked, no deposit.
                if "locked" in c:
                    if not isinstance(c["locked"], bool):
                        raise InvalidInput(f"clid {number}: locked must be true or false")
                    clid.locked = c["locked"]
                elif clid.locked is None:
                    clid.locked = False
                if "deposit" in c:
                    deposit = c["deposit"]
                    clid.deposit = (
                        None
                        if deposit is None
                        else parse_decimal(str(deposit), 6, f"deposit of clid {number}")
                    )
                _level(clid, c, f"clid {number}")
                counts["clids"] += 1
    session.flush()
    for entry in data.get("rates") or []:
        _known_keys(entry, "rates", "rates entry")
        counts["rates"] += _seed_rates(session, entry, base_dir)
    for entry in data.get("accounts") or []:
        _known_keys(entry, "account", f"account {entry.get('username', '?')}")
        _seed_account(session, entry, os.environ if environ is None else environ)
        counts["accounts"] += 1
    return counts


def _seed_account(session: Session, spec: dict, environ: Mapping[str, str]) -> None:
    """A back-office account. Passwords never live in seed files: `password_env` names the
    environment variable that holds it (needed to create an account; optional to update)."""
    from admin.accounts import create_account, set_password

    username = _text(spec, "username", "account")
    if "password" in spec:
        raise InvalidInput(
            f"account {username}: passwords are never kept in seed files; "
            "put it in an environment variable and name it with `password_env`"
        )
    role = _text(spec, "role", f"account {username}")
    reseller_id = group_id = None
    if spec.get("group"):
        group = session.scalar(select(AccountGroup).where(AccountGroup.name == spec["group"]))
        if group is None:
            raise InvalidInput(f"account {username}: unknown group {spec['group']!r}")
        group_id, reseller_id = group.id, group.reseller_id
    elif spec.get("reseller"):
        reseller = session.scalar(select(Reseller).where(Reseller.name == spec["reseller"]))
        if reseller is None:
            raise InvalidInput(f"account {username}: unknown reseller {spec['reseller']!r}")
        reseller_id = reseller.id
    needs = {"admin": (False, False), "reseller": (True, False)}.get(role, (True, True))
    if (reseller_id is not None, group_id is not None) != needs:
        raise InvalidInput(
            f"account {username}: a {role} account needs "
            + {(False, False): "no reseller or group", (True, False): "`reseller`"}.get(
                needs, "`group`"
            )
        )
    password = None
    if spec.get("password_env"):
        password = environ.get(str(spec["password_env"]), "")
        if not password:
            raise InvalidInput(f"account {username}: ${spec['password_env']} is not set")
    account = session.scalar(select(Account).where(Account.username == username))
    if account is None:
        if password is None:
            raise InvalidInput(f"account {username}: a new account needs `password_env`")
        create_account(session, username, password, role, reseller_id, group_id)
        return
    account.role, account.reseller_id, account.group_id = role, reseller_id, group_id
    if password is not None:
        set_password(account, password)


def _seed_rates(session: Session, entry: dict, base_dir: Path) -> int:
    table = _text(entry, "table", "rates entry")
    reseller_id = group_id = 0
    if entry.get("reseller"):
        reseller = session.scalar(select(Reseller).where(Reseller.name == entry["reseller"]))
        if reseller is None:
            raise InvalidInput(f"rates: unknown reseller {entry['reseller']!r}")
        reseller_id = reseller.id
    if entry.get("group"):
        group = session.scalar(select(AccountGroup).where(AccountGroup.name == entry["group"]))
        if group is None:
            raise InvalidInput(f"rates: unknown group {entry['group']!r}")
        group_id = group.id
    if "file" in entry:
        rows = ratefiles.mapped_rows(
            ratefiles.read_cells(base_dir / entry["file"]), entry.get("map") or {}
        )
    else:
        for n, row in enumerate(entry.get("rows") or [], start=1):
            _known_keys(row, "rate", f"rates ({table}) row {n}")
        rows = (
            (n, {k: str(v) for k, v in row.items()})
            for n, row in enumerate(entry.get("rows") or [], start=1)
        )
    report = import_rates(session, Target(table, reseller_id, group_id), rows, replace=True)
    return report.inserted + report.updated


def provision_redis(session: Session, engine: CreditEngine, book: RedisRateBook) -> int:
    """Push every clid's levels (limits, types, lock, deposit, multiples) and payer key, and
    the whole rate book, into Redis. Balances already in Redis are kept; missing ones start
    from MySQL's curcredit. Returns the number of clids."""
    count = 0
    for clid in session.scalars(select(Clid)):
        provision_clid(engine, clid)
        count += 1
    sync_all(session, book)
    return count


def provision_clid(engine: CreditEngine, clid: Clid) -> None:
    """One booth's levels, payer key and configuration into Redis (balances kept)."""
    group, reseller = clid.group, clid.group.reseller
    levels = {"clid": clid, "group": group, "reseller": reseller}
    engine.provision(
        Payer(reseller.id, group.id, clid.id),
        limits={k: (v.limit_type, stored_micros(v.creditlimit)) for k, v in levels.items()},
        payer_key=clid.clid,
        locked=clid.locked,
        deposit=None if clid.deposit is None else stored_micros(clid.deposit),
        multiples=(
            to_multiple(group.customer_multiple),
            to_multiple(group.group_multiple),
            to_multiple(reseller.multiple),
        ),
        used=(
            stored_micros(clid.curcredit),
            stored_micros(group.curcredit),
            stored_micros(reseller.curcredit),
        ),
    )


def _upsert(session: Session, model, key: str, value: str, **create):
    row = session.scalar(select(model).where(getattr(model, key) == value))
    if row is None:
        row = model(**{key: value}, **create)
        session.add(row)
    return row


def _level(row, spec: dict, what: str) -> None:
    limit_type = str(spec.get("limit_type", row.limit_type or "none"))
    if limit_type not in LIMIT_TYPES:
        raise InvalidInput(
            f"{what}: limit_type {limit_type!r} is not one of {', '.join(LIMIT_TYPES)}"
        )
    row.limit_type = limit_type
    if "credit_limit" in spec:
        row.creditlimit = parse_decimal(str(spec["credit_limit"]), 6, f"{what} credit_limit")


def _known_keys(spec, kind: str, what: str) -> None:
    """Refuse keys a seed entry does not have (a typo, or `accountcode` on a group or a
    booth): silently ignored, they would leave the tenant other than the file says."""
    if not isinstance(spec, dict):
        raise InvalidInput(f"{what}: expected a mapping of keys, got {spec!r}")
    unknown = sorted(set(map(str, spec)) - SEED_KEYS[kind])
    if unknown:
        raise InvalidInput(
            f"{what}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(a {kind} entry has: {', '.join(sorted(SEED_KEYS[kind]))}; see docs/seed.md)"
        )


def _text(spec: dict, key: str, what: str) -> str:
    value = spec.get(key) if isinstance(spec, dict) else None
    if value is None or str(value).strip() == "":
        raise InvalidInput(f"{what}: `{key}` is required")
    return str(value).strip()


def _new_pin(session: Session, digits: int = 12) -> str:
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(digits))
        if session.scalar(select(Clid.id).where(Clid.pin == pin)) is None:
            return pin
