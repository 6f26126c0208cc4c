"""Column headers, form labels and value names of the back office in the user's language.

Flask-Admin builds its labels once, at start-up, from the column names ("reseller_credit" ->
"Reseller Credit"): here each becomes a lazy string, translated when a page is drawn, so the
English stays as it was and admin/translations gives the Simplified Chinese. Enumerated
values (limit types, dispositions, roles, kinds, credit operations) are translated as they
are listed.
"""

from __future__ import annotations

from flask_admin.model import typefmt
from flask_admin.model.helpers import prettify_name
from flask_babel import gettext, lazy_gettext
from jinja2 import pass_context
from markupsafe import Markup
from sqlalchemy import inspect as sa_inspect

from admin.accounts import LANGUAGES
from schema.base import LIMIT_TYPES
from schema.calls import BILLING_STATUSES, DISPOSITIONS
from schema.credit import LEVELS, OPERATIONS
from schema.tenants import CLID_KINDS, ROLES

# Values stored as codes and shown as words (their msgids are in admin/translations): the
# vocabularies the schema owns, so a new code is translated where it is declared.
VALUE_NAMES = frozenset(
    {
        *LIMIT_TYPES,
        *DISPOSITIONS,
        *BILLING_STATUSES,
        *CLID_KINDS,
        *ROLES,
        *LEVELS,
        *OPERATIONS,
        *LANGUAGES,
    }
)


class TranslatedLabels:
    """Mixin of a Flask-Admin model view (before ModelView in the bases)."""

    def __init__(self, model, *args, **kwargs) -> None:
        own = dict(getattr(self, "column_labels", None) or {})
        names = {attr.key for attr in sa_inspect(model).attrs} | set(own)
        names |= set(getattr(self, "form_extra_fields", None) or {})
        names |= {c for c in getattr(self, "column_list", None) or () if isinstance(c, str)}
        self.column_labels = {
            name: lazy_gettext(str(own.get(name, prettify_name(name)))) for name in names
        }
        self.column_type_formatters = {**typefmt.BASE_FORMATTERS, bool: self._bool_icon}
        self.column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, bool: _yes_no}
        super().__init__(model, *args, **kwargs)

    def _bool_icon(self, view, value, name):
        """Flask-Admin's check icon, its tooltip in the user's language."""
        glyph = "ok-circle" if value else "minus-sign"
        fa = "fa-check-circle" if value else "fa-minus-circle"
        label = f"{self.column_labels.get(name, name)}: {_yes_no(view, value, name)}"
        return Markup(  # format() escapes the label
            '<span class="fa {fa} glyphicon glyphicon-{glyph} icon-{glyph}" title="{label}"></span>'
        ).format(fa=fa, glyph=glyph, label=label)

    def _get_filter_groups(self):
        """The filters' fixed options (dispositions, kinds...) as value names."""
        groups = super()._get_filter_groups()
        for filters in (groups or {}).values():
            for item in filters:
                if item.get("options"):
                    item["options"] = [(k, _value_name(v)) for k, v in item["options"]]
        return groups

    @pass_context  # as Flask-Admin's own: Jinja passes the template context
    def get_list_value(self, context, model, name):
        return _value_name(super().get_list_value(context, model, name))

    @pass_context
    def get_detail_value(self, context, model, name):
        return _value_name(super().get_detail_value(context, model, name))


def _yes_no(view, value, name) -> str:
    return gettext("True") if value else gettext("False")


def _value_name(value):
    if isinstance(value, str) and not isinstance(value, Markup) and value in VALUE_NAMES:
        return gettext(value)
    return value
