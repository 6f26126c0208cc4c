"""Who may see and change which rows: the capability matrix of ORIGINAL.md section 9, as code.

Every back-office view asks here, on the server, for every listing, row, form and action:
- `visible(model, user)`: a WHERE clause (an IN subquery, never a join: a join breaks
  Flask-Admin's filters on MariaDB) for the rows the user may see;
- `writable(row, user)`: may the user change or delete this row;
- `creatable(model, user)`: may the user add rows of this kind at all.
"""

from __future__ import annotations

from sqlalchemy import false, or_, select, true

from schema import (
    Account,
    AccountGroup,
    CallshopRate,
    Cdr,
    Clid,
    CreditHistory,
    CustomerRate,
    Reseller,
    ResellerRate,
)

# Which role may open which view at all (operators: no configuration; they see their shop's
# booths read-only, for the counter operations; a reseller sees its own account read-only).
VIEWS = {
    "accounts": {"admin", "reseller", "groupadmin"},
    "resellers": {"admin", "reseller"},
    "groups": {"admin", "reseller", "groupadmin"},
    "clids": {"admin", "reseller", "groupadmin", "operator"},
    "customer_rates": {"admin", "reseller", "groupadmin", "operator"},
    "callshop_rates": {"admin", "reseller", "groupadmin"},
    "reseller_rates": {"admin", "reseller"},
    "cdrs": {"admin", "reseller", "groupadmin", "operator"},
    "credit_history": {"admin", "reseller", "groupadmin"},
}
# Which account roles each role may create (the original let a callshop admin make an admin).
CREATES_ROLES = {
    "admin": ("admin", "reseller", "groupadmin", "operator"),
    "reseller": ("groupadmin", "operator"),
    "groupadmin": ("operator",),
}


def own_groups(user):
    return select(AccountGroup.id).where(AccountGroup.reseller_id == user.reseller_id)


def visible(model, user):
    role = user.role
    if role == "admin":
        return true()
    if model is Account:
        if role == "reseller":
            return Account.reseller_id == user.reseller_id
        if role == "groupadmin":
            return (Account.group_id == user.group_id) & (Account.role == "operator")
        return false()
    if model is Reseller:
        return Reseller.id == user.reseller_id
    if model is AccountGroup:
        if role == "reseller":
            return AccountGroup.reseller_id == user.reseller_id
        return AccountGroup.id == user.group_id
    if model is Clid:
        if role == "reseller":
            return Clid.group_id.in_(own_groups(user))
        return Clid.group_id == user.group_id
    if model in (CustomerRate, CallshopRate):
        mine = model.reseller_id == user.reseller_id
        if role == "reseller":
            return or_(model.reseller_id == 0, mine)
        # a shop sees its own rows, its reseller's rows for all shops, and the global rows
        return or_(model.reseller_id == 0, mine & model.group_id.in_((0, user.group_id)))
    if model is ResellerRate:
        return or_(ResellerRate.reseller_id == 0, ResellerRate.reseller_id == user.reseller_id)
    if model in (Cdr, CreditHistory):
        if role == "reseller":
            return model.reseller_id == user.reseller_id
        return model.group_id == user.group_id
    return false()


def writable(row, user) -> bool:
    role = user.role
    if role == "admin":
        return True
    if isinstance(row, Account):
        return row.role in CREATES_ROLES.get(role, ()) and _in_scope(
            row.reseller_id, row.group_id, user
        )
    if isinstance(row, AccountGroup):
        return role in ("reseller", "groupadmin") and _in_scope(row.reseller_id, row.id, user)
    if isinstance(row, Clid):
        group = row.group
        return (
            group is not None
            and role in ("reseller", "groupadmin")
            and (_in_scope(group.reseller_id, group.id, user))
        )
    if isinstance(row, CustomerRate):
        if role == "reseller":
            return row.reseller_id == user.reseller_id
        if role == "groupadmin":
            return row.reseller_id == user.reseller_id and row.group_id == user.group_id
        return False
    if isinstance(row, CallshopRate):
        return role == "reseller" and row.reseller_id == user.reseller_id
    return False  # reseller rates, CDRs, credit history: read-only below admin


def creatable(model, user) -> bool:
    role = user.role
    if role == "admin":
        return model not in (Cdr, CreditHistory)
    return {
        Account: role in ("reseller", "groupadmin"),
        AccountGroup: role == "reseller",
        Clid: role in ("reseller", "groupadmin"),
        CustomerRate: role in ("reseller", "groupadmin"),
        CallshopRate: role == "reseller",
    }.get(model, False)


def editable(model, user) -> bool:
    """May the user change some rows of this kind (which ones: `writable`)."""
    if user.role == "admin":
        return model not in (Cdr, CreditHistory)
    return {
        Account: user.role in ("reseller", "groupadmin"),
        AccountGroup: user.role in ("reseller", "groupadmin"),
        Clid: user.role in ("reseller", "groupadmin"),
        CustomerRate: user.role in ("reseller", "groupadmin"),
        CallshopRate: user.role == "reseller",
    }.get(model, False)


def _in_scope(reseller_id, group_id, user) -> bool:
    if user.role == "reseller":
        return reseller_id == user.reseller_id
    return reseller_id == user.reseller_id and group_id == user.group_id


def price_columns(user) -> tuple[str, ...]:
    """The CDR prices a role sees (the original: an operator sees the customer price only)."""
    return {
        "admin": ("credit", "callshop_credit", "reseller_credit"),
        "reseller": ("credit", "callshop_credit", "reseller_credit"),
        "groupadmin": ("credit", "callshop_credit"),
    }.get(user.role, ("credit",))
