"""Every credit operation, with who asked for it and when: charges and refunds, and also the
lock, unlock, credit-limit, limit-type and deposit changes that the credit history (money
moved, one row per charge or refund) does not list. Read-only.

The credit service writes one `credit_operations` row per operation before anything else
(workers/credit_ops.py), so this is the complete trail; the view only shows it, scoped like
the credit history: an admin everything, a reseller its own account, shops and booths, a
groupadmin its shop and booths.
"""

from __future__ import annotations

from flask import abort, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user
from sqlalchemy import and_, false, or_, select, true

from admin.extensions import db
from admin.i18n_labels import TranslatedLabels
from admin.list_args import ClampedPaging, SafeCsvExport
from admin.views import money
from schema import Account, AccountGroup, Clid, CreditOperation, Reseller

ROLES = ("admin", "reseller", "groupadmin")


def visible_operations(user):
    """WHERE clause: the operations on levels the user may see."""
    op = CreditOperation
    if user.role == "admin":
        return true()
    if user.role == "reseller":
        groups = select(AccountGroup.id).where(AccountGroup.reseller_id == user.reseller_id)
        return or_(
            and_(op.level == "reseller", op.target_id == user.reseller_id),
            and_(op.level == "group", op.target_id.in_(groups)),
            and_(
                op.level == "clid",
                op.target_id.in_(select(Clid.id).where(Clid.group_id.in_(groups))),
            ),
        )
    if user.role == "groupadmin":
        return or_(
            and_(op.level == "group", op.target_id == user.group_id),
            and_(
                op.level == "clid",
                op.target_id.in_(select(Clid.id).where(Clid.group_id == user.group_id)),
            ),
        )
    return false()


NAMES = {
    "clid": (Clid, Clid.clid),
    "group": (AccountGroup, AccountGroup.name),
    "reseller": (Reseller, Reseller.name),
}


def target_name(view, context, model, name) -> str:
    model_, column = NAMES[model.level]
    found = db.session.scalar(select(column).where(model_.id == model.target_id))
    return f"{found} (#{model.target_id})" if found is not None else f"#{model.target_id}"


def who(view, context, model, name) -> str:
    if model.account_id is None:
        return "command line"
    return db.session.scalar(select(Account.username).where(Account.id == model.account_id)) or ""


class CreditOperationView(TranslatedLabels, ClampedPaging, SafeCsvExport, ModelView):
    can_create = can_edit = can_delete = False
    can_view_details = False
    page_size = 50
    column_default_sort = ("created_at", True)
    column_list = (
        "created_at",
        "level",
        "target_id",
        "kind",
        "amount",
        "value",
        "comment",
        "account_id",
        "applied_at",
    )
    column_labels = {
        "target_id": "Booth / shop / reseller",
        "account_id": "By",
        "kind": "Operation",
    }
    column_formatters = {"amount": money, "target_id": target_name, "account_id": who}
    column_filters = ("created_at", "level", "kind")
    column_sortable_list = ("created_at", "level", "kind")

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role in ROLES

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.url))
        abort(403)

    def get_query(self):
        return super().get_query().filter(visible_operations(current_user))

    def get_count_query(self):
        return super().get_count_query().filter(visible_operations(current_user))

    def get_one(self, id):
        row = db.session.scalar(
            select(CreditOperation).where(
                CreditOperation.id == id, visible_operations(current_user)
            )
        )
        if row is None:
            abort(404)
        return row
