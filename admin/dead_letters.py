"""Dead letters in the back office: calls settlement could not write, for an admin to review.

Read-only and for administrators only (checked on the server for every request): a dead
letter holds another tenant's raw call data, and it is fixed by hand, not by a form.
"""

from __future__ import annotations

from typing import ClassVar

from flask import abort, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import escape

from admin.extensions import db
from admin.i18n_labels import TranslatedLabels
from admin.views import SecureForm, money
from schema import DeadLetter


class DeadLetterView(TranslatedLabels, ModelView):  # headers and filters in the user's language
    form_base_class = SecureForm
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50
    column_default_sort = ("created_at", True)
    column_list = (
        "created_at",
        "call_id",
        "reseller_id",
        "group_id",
        "clid_id",
        "credit",
        "error",
        "needs_review",
    )
    column_details_list = (*column_list, "callshop_credit", "reseller_credit", "raw_record")
    column_details_list = (*column_details_list, "raw_meta", "reviewed_at")
    column_filters = ("created_at", "needs_review", "reseller_id", "clid_id")
    column_formatters: ClassVar[dict] = {
        "credit": money,
        "callshop_credit": money,
        "reseller_credit": money,
        "error": lambda v, c, m, n: escape(m.error[:200]),
    }

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role == "admin"

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.url))
        abort(403)


def register(admin) -> None:
    admin.add_view(DeadLetterView(DeadLetter, db, name=_l("Dead letters"), endpoint="dead_letters"))
