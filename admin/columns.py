"""Which columns each role may see, and Flask-Admin's column caches narrowed to them.

Rows are scoped by `admin.scope`; columns here. A column a role may not see must be gone from
everything Flask-Admin does with columns, not only from the page: sorting (by index into the
list columns), filters, search, details and export. Flask-Admin keeps these in per-view caches
built once at start-up; `RoleColumns` serves each role its own narrowed copy, so the index a
header link carries is the index the server sorts by, and a hidden column cannot be named.
"""

from __future__ import annotations

from collections import OrderedDict

from flask import has_request_context
from flask_admin.model.base import FilterGroup
from flask_login import current_user

from schema import Account, AccountGroup, Cdr, Clid, Reseller

EVERYONE = ("admin", "reseller", "groupadmin", "operator")
STAFF_ABOVE_SHOP = ("admin", "reseller")
SHOP_MANAGERS = ("admin", "reseller", "groupadmin")

# model -> column -> the roles that may see it (a column not named here: whoever sees the row).
# The three prices (and the rate rows behind them) follow DESIGN.md section 2: the customer
# price is the shop's revenue, the callshop price the shop's cost and the reseller's revenue,
# the reseller price the reseller's cost. Each role sees the prices down from its own level.
RESTRICTED = {
    Account: {"password_hash": (), "session_version": ()},  # nobody, ever; internal
    Reseller: {},
    AccountGroup: {"credit_reseller": STAFF_ABOVE_SHOP},
    Clid: {
        "session_version": (),
        "pin": SHOP_MANAGERS,
        "credit_group": SHOP_MANAGERS,
        "credit_reseller": STAFF_ABOVE_SHOP,
    },
    Cdr: {
        "callshop_credit": SHOP_MANAGERS,
        "callshop_rate_id": SHOP_MANAGERS,
        "reseller_credit": STAFF_ABOVE_SHOP,
        "reseller_rate_id": STAFF_ABOVE_SHOP,
        "rate_memo": STAFF_ABOVE_SHOP,
    },
}


def hidden_columns(model, role: str) -> frozenset[str]:
    """The columns of `model` that `role` may not see (sort, filter, search or export by)."""
    return frozenset(c for c, roles in RESTRICTED.get(model, {}).items() if role not in roles)


def _name(column) -> str:
    """A column's name whether Flask-Admin holds it as a string or a SQLAlchemy attribute."""
    return column if isinstance(column, str) else getattr(column, "key", str(column))


def _filter_column(flt) -> str:
    return _name(getattr(flt, "column", ""))


class RoleColumns:
    """Mixin for a Flask-Admin ModelView: the column caches, per role of the current user.

    Flask-Admin assigns `_list_columns` etc. once at start-up; the properties below keep that
    as the base and answer each request with the base minus the role's hidden columns.
    """

    def _role_cache(self, name: str):
        base = self.__dict__.get("_asterbill_base", {}).get(name)
        if not has_request_context() or not current_user.is_authenticated:
            return base
        role = current_user.role
        cache = self.__dict__.setdefault("_asterbill_by_role", {})
        if (name, role) not in cache:
            hidden = hidden_columns(self.model, role)
            if name in ("_filters", "_filter_args", "_filter_groups"):
                cache.update({(k, role): v for k, v in self._narrow_filters(hidden).items()})
            else:
                cache[(name, role)] = _narrow(name, base, hidden)
        return cache[(name, role)]

    def _set_base(self, name: str, value) -> None:
        self.__dict__.setdefault("_asterbill_base", {})[name] = value
        self.__dict__.pop("_asterbill_by_role", None)

    def _narrow_filters(self, hidden: frozenset[str]) -> dict:
        """The filters a role may use, with their URL names and groups renumbered (Flask-Admin
        finds a filter by its position in `_filters`)."""
        base = self.__dict__.get("_asterbill_base", {}).get("_filters") or []
        filters = [f for f in base if _filter_column(f) not in hidden]
        if not filters:
            return {"_filters": filters, "_filter_args": None, "_filter_groups": None}
        groups: OrderedDict = OrderedDict()
        args = {}
        for i, flt in enumerate(filters):
            key = str(flt.name)
            if key not in groups:
                groups[key] = FilterGroup(flt.name)
            groups[key].append(
                {
                    "index": i,
                    "arg": self.get_filter_arg(i, flt),
                    "operation": flt.operation(),
                    "options": flt.get_options(self) or None,
                    "type": flt.data_type,
                }
            )
            args[self.get_filter_arg(i, flt)] = (i, flt)
        return {"_filters": filters, "_filter_args": args, "_filter_groups": groups}


def _narrow(name: str, base, hidden: frozenset[str]):
    if base is None or not hidden:
        return base
    if name == "_sortable_columns":
        return {k: v for k, v in base.items() if _name(k) not in hidden}
    if name == "_search_fields":
        return [(column, path) for column, path in base if _name(column) not in hidden]
    if name == "_search_supported":
        return base
    return [c for c in base if _name(c[0]) not in hidden]  # (name, label) pairs


def _per_role(name: str) -> property:
    return property(
        lambda self: self._role_cache(name), lambda self, value: self._set_base(name, value)
    )


for _cached in (
    "_list_columns",
    "_sortable_columns",
    "_details_columns",
    "_export_columns",
    "_search_fields",
    "_filters",
    "_filter_args",
    "_filter_groups",
):
    setattr(RoleColumns, _cached, _per_role(_cached))
