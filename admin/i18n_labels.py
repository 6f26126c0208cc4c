"""Column headers, form labels and value names of the back office in the user's language.

Flask-Admin builds its labels once, at start-up, from the column names ("reseller_credit" ->
"Reseller Credit"): here each becomes a lazy string, translated when a page is drawn, so the
English stays as it was and admin/translations gives the Simplified Chinese. Enumerated
values (limit types, dispositions, roles, kinds, credit operations) are translated as they
are listed.
"""

from __future__ import annotations

from flask_admin.model.helpers import prettify_name
from flask_babel import gettext, lazy_gettext
from jinja2 import pass_context
from markupsafe import Markup
from sqlalchemy import inspect as sa_inspect

# Values stored as codes and shown as words (their msgids are in admin/translations).
VALUE_NAMES = frozenset(
    {
        "none",
        "prepaid",
        "postpaid",
        "ANSWERED",
        "NO ANSWER",
        "BUSY",
        "FAILED",
        "CONGESTION",
        "booth",
        "extension",
        "card",
        "admin",
        "reseller",
        "groupadmin",
        "operator",
        "clid",
        "group",
        "charge",
        "refund",
        "set_limit",
        "set_limit_type",
        "lock",
        "unlock",
        "set_deposit",
        "checkout",
    }
)


class TranslatedLabels:
    """Mixin of a Flask-Admin model view (before ModelView in the bases)."""

    def __init__(self, model, *args, **kwargs) -> None:
        own = dict(getattr(self, "column_labels", None) or {})
        names = {attr.key for attr in sa_inspect(model).attrs} | set(own)
        names |= set(getattr(self, "form_extra_fields", None) or {})
        self.column_labels = {
            name: lazy_gettext(str(own.get(name, prettify_name(name)))) for name in names
        }
        super().__init__(model, *args, **kwargs)

    @pass_context  # as Flask-Admin's own: Jinja passes the template context
    def get_list_value(self, context, model, name):
        return _value_name(super().get_list_value(context, model, name))

    @pass_context
    def get_detail_value(self, context, model, name):
        return _value_name(super().get_detail_value(context, model, name))


def _value_name(value):
    if isinstance(value, str) and not isinstance(value, Markup) and value in VALUE_NAMES:
        return gettext(value)
    return value
