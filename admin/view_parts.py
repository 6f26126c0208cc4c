"""Parts the back office's model views share: what a list shows (icons only on rows the user
may use, credit available, exact rates) and what a failed save says (a plain message for
people; the statement and its parameters go to the log only)."""

from __future__ import annotations

import logging

from flask import current_app, flash, request
from flask_admin.contrib.sqla.validators import Unique
from flask_admin.model.template import (
    BaseListRowAction,
    DeleteRowAction,
    EditRowAction,
    LinkRowAction,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy.exc import IntegrityError
from wtforms.fields.core import UnboundField
from wtforms.validators import ValidationError

from admin import display, scope
from ops.errors import InvalidInput

log = logging.getLogger("asterbill.admin")
# One answer for a name or number that is taken, whoever holds it: it names no other row.
TAKEN = _l("Not available: please choose another.")


def exact(view, context, model, name):
    """A rate or connect charge, with every decimal it has (0.085 stays 0.085)."""
    return display.exact_text(getattr(model, name))


def available(view, context, model, name):
    return display.money_text(display.available(model))


class OnlyWhere(BaseListRowAction):
    """A row icon shown only on the rows where `allowed(row)` holds."""

    def __init__(self, inner: BaseListRowAction, allowed) -> None:
        super().__init__(inner.title)
        self.inner, self.allowed = inner, allowed

    def render(self, context, row_id, row):
        return self.inner.render(context, row_id, row) if self.allowed(row) else ""


def credit_action(level: str) -> OnlyWhere:
    """The coin icon to the credit page, on the rows the user may operate on."""
    from admin.credit_page import may_operate

    return OnlyWhere(
        LinkRowAction("fa fa-money", f"/admin/credit/{level}/{{row_id}}", title=_l("Credit")),
        lambda row: may_operate(current_user, level, row),
    )


class RowIcons:
    """Edit and delete icons only on the rows the user may change (`scope.writable`)."""

    def get_list_row_actions(self):
        def writable(row) -> bool:
            return scope.writable(row, current_user)

        return [
            OnlyWhere(a, writable) if isinstance(a, (EditRowAction, DeleteRowAction)) else a
            for a in super().get_list_row_actions()
        ]


class WithAvailable:
    """Details of a credit level: the credit available right after the credit used."""

    def get_details_columns(self):
        columns = super().get_details_columns()
        at = next((i + 1 for i, (c, _) in enumerate(columns) if c == "curcredit"), len(columns))
        return [*columns[:at], ("available", self.get_column_name("available")), *columns[at:]]


class PlainMessages:
    """Messages of a failed save that reveal no other tenant's rows and no SQL."""

    def scaffold_form(self):
        form_class = super().scaffold_form()
        for name in dir(form_class):
            field = getattr(form_class, name)
            if isinstance(field, UnboundField):
                for validator in field.kwargs.get("validators") or ():
                    if isinstance(validator, Unique):  # Flask-Admin's "Already exists."
                        validator.message = TAKEN
        return form_class

    def handle_view_exception(self, exc: Exception) -> bool:
        if isinstance(exc, ValidationError):
            return super().handle_view_exception(exc)
        if isinstance(exc, InvalidInput):
            flash(str(exc), "error")
            return True
        if current_app.config.get("FLASK_ADMIN_RAISE_ON_VIEW_EXCEPTION"):
            raise exc
        log.error("%s failed for %s", request.endpoint, current_user.name, exc_info=exc)
        if isinstance(exc, IntegrityError):
            flash(_("Not saved: a name or number is not available, or the row is in use."), "error")
        else:
            flash(_("Not saved: the server could not do this; details are in its log."), "error")
        return True
