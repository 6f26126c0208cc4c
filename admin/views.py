"""Flask-Admin views: thin. Every query, row, form and action goes through `admin.scope`;
changes that the real-time side needs (clids, rates) are pushed to Redis at once.

Row scoping in Flask-Admin 2.2 (STACK-NOTES): `get_query` and `get_count_query` filter the
lists, `get_one` (edit, details, delete) is overridden too and answers 404 for a row out of
scope and 403 for a visible row the user may not change; bulk actions go through
`delete_model`, which checks again. Foreign-key dropdowns only list rows in scope.
"""

from __future__ import annotations

import secrets

from flask import abort, current_app, redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import FileUploadField
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import escape
from sqlalchemy import inspect, select
from wtforms import PasswordField, SelectField
from wtforms.validators import Optional, ValidationError

from admin import rate_form, scope
from admin.accounts import LANGUAGES
from admin.ascii_numbers import AsciiNumbers
from admin.columns import RoleColumns
from admin.extensions import db
from admin.i18n_labels import TranslatedLabels
from admin.list_args import ClampedPaging, SafeCsvExport
from admin.view_parts import (
    PlainMessages,
    RowIcons,
    WithAvailable,
    available,
    credit_action,
    exact,
)
from ops.errors import InvalidInput
from rating import ratefiles
from rating.money import format_micros, stored_micros
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

READ_ONLY_ENDPOINT_SUFFIXES = (".details_view", ".index_view", ".export")


def money(view, context, model, name):
    value = getattr(model, name)
    if value is None:
        return ""
    decimals = current_app.config["ASTERBILL_DISPLAY_DECIMALS"]
    return format_micros(stored_micros(value), decimals)


# Lifetime totals of the three prices of a level's calls (which of them a role sees: columns.py)
TOTALS = dict.fromkeys(("credit_clid", "credit_group", "credit_reseller"), money)


class Home(AdminIndexView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role != "clid"

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.url))

    @expose("/")
    def index(self):
        return self.render("home.html", user=current_user)


class SecureForm(AsciiNumbers, FlaskForm):
    """Flask-WTF's form (a CSRF token that CSRFProtect checks) that also remembers the row it
    edits, as Flask-Admin's own BaseForm does (its unique-value check needs it)."""

    def __init__(self, formdata=None, obj=None, prefix="", **kwargs) -> None:
        self._obj = obj
        if formdata is None:
            super().__init__(obj=obj, prefix=prefix, **kwargs)
        else:
            super().__init__(formdata=formdata, obj=obj, prefix=prefix, **kwargs)


class ScopedView(
    TranslatedLabels, ClampedPaging, SafeCsvExport, RoleColumns, RowIcons, PlainMessages, ModelView
):
    """A model view whose rows, forms and actions follow `admin.scope` for the user."""

    view_key = ""  # key of admin.scope.VIEWS
    form_base_class = SecureForm  # a CSRF token in every form, checked by CSRFProtect
    page_size = 50
    can_view_details = True
    named_filter_urls = True
    form_excluded_columns = ("created_at",)

    # -- who may open it, and do what -------------------------------------------------------
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role in scope.VIEWS[self.view_key]

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.url))
        abort(403)

    @property
    def can_create(self) -> bool:
        return current_user.is_authenticated and scope.creatable(self.model, current_user)

    @property
    def can_edit(self) -> bool:
        return current_user.is_authenticated and scope.editable(self.model, current_user)

    @property
    def can_delete(self) -> bool:
        return current_user.is_authenticated and scope.creatable(self.model, current_user)

    # -- rows ---------------------------------------------------------------------------
    def get_query(self):
        return super().get_query().filter(scope.visible(self.model, current_user))

    def get_count_query(self):
        return super().get_count_query().filter(scope.visible(self.model, current_user))

    def get_one(self, id):
        row = db.session.scalar(
            select(self.model).where(self.model.id == id, scope.visible(self.model, current_user))
        )
        if row is None:
            abort(404)
        endpoint = request.endpoint or ""
        if not endpoint.endswith(READ_ONLY_ENDPOINT_SUFFIXES) and not scope.writable(
            row, current_user
        ):
            abort(403)
        return row

    def on_model_change(self, form, model, is_created):
        if is_created and not scope.creatable(self.model, current_user):
            raise ValidationError("you may not add these")
        self.fill_scope(model, is_created)
        db.session.flush()
        if not scope.writable(model, current_user):
            raise ValidationError("that is outside what you manage")

    def on_model_delete(self, model):
        if not scope.writable(model, current_user):
            raise ValidationError("that is outside what you manage")

    def fill_scope(self, model, is_created) -> None:
        """Set the owner columns the user may not choose (e.g. a reseller's own id)."""


def group_choices():
    return db.session.scalars(
        select(AccountGroup)
        .where(scope.visible(AccountGroup, current_user))
        .order_by(AccountGroup.name)
    ).all()


class AccountView(ScopedView):
    view_key = "accounts"
    column_list = ("username", "role", "reseller", "group", "language", "active", "last_login_at")
    column_searchable_list = ("username",)
    form_columns = ("username", "role", "group", "reseller", "language", "active")
    form_extra_fields = {"new_password": PasswordField("Password", validators=[Optional()])}
    form_overrides = {"role": SelectField, "language": SelectField}
    form_args = {
        "group": {"query_factory": group_choices, "allow_blank": True},
        "language": {"choices": list(LANGUAGES.items())},
    }
    column_labels = {"new_password": "Password (leave empty to keep)"}

    def create_form(self, obj=None):
        form = super().create_form(obj)
        self._limit(form)
        return form

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        self._limit(form)
        return form

    def _limit(self, form) -> None:
        form.role.choices = [(r, r) for r in scope.CREATES_ROLES.get(current_user.role, ())]
        if current_user.role != "admin":
            del form.reseller

    def fill_scope(self, model, is_created) -> None:
        from admin.accounts import check_language, check_username, set_password

        try:  # one rule for every way an account is made (admin/accounts.py)
            if is_created or inspect(model).attrs.username.history.has_changes():
                check_username(model.username)
            check_language(model.language)
        except InvalidInput as exc:
            raise ValidationError(str(exc)) from None
        if model.role not in scope.CREATES_ROLES.get(current_user.role, ()):
            raise ValidationError(f"you may not make {model.role} accounts")
        if form_password := request.form.get("new_password"):
            set_password(model, form_password)
        elif is_created:
            raise ValidationError("a new account needs a password")
        if model.role == "admin":
            model.reseller_id = model.group_id = None
            model.group = model.reseller = None
        elif model.role == "reseller":
            model.group_id, model.group = None, None
            if current_user.role != "admin":
                model.reseller_id = current_user.reseller_id
        else:
            if model.group is None:
                raise ValidationError(f"a {model.role} account needs a group")
            model.reseller_id = model.group.reseller_id
            model.reseller = model.group.reseller


class ResellerView(WithAvailable, ScopedView):
    view_key = "resellers"
    column_list = (
        "name",
        "limit_type",
        "creditlimit",
        "curcredit",
        "available",
        "multiple",
        "allow_callback",
    )
    column_formatters = {
        "creditlimit": money,
        "curcredit": money,
        "available": available,
        **TOTALS,
    }
    form_columns = ("name", "accountcode", "multiple", "allow_callback")

    def after_model_change(self, form, model, is_created):
        for group in model.groups:  # the multiple reaches every booth's billing at once
            _provision_group(group)

    column_extra_row_actions = [credit_action("reseller")]


LOGO_MAX_BYTES = 512 * 1024
LOGO_SIGNATURES = {  # what the file's first bytes must be, per extension (no SVG: scripts)
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
}


def logo_is_an_image(form, field) -> None:
    """A logo must be a PNG, JPEG or GIF (by its bytes, not its name) of at most 512 KB."""
    data = field.data
    if not data or not getattr(data, "filename", None):
        return
    extension = data.filename.rsplit(".", 1)[-1].lower()
    head = data.stream.read(LOGO_MAX_BYTES + 1)
    data.stream.seek(0)
    if len(head) > LOGO_MAX_BYTES:
        raise ValidationError("the logo may have at most 512 KB")
    if not head.startswith(LOGO_SIGNATURES.get(extension, (b"\0invalid",))):
        raise ValidationError("the logo must be a PNG, JPEG or GIF image")


def logo_name(model, file_data) -> str:
    extension = file_data.filename.rsplit(".", 1)[-1].lower()
    return f"{secrets.token_hex(12)}.{extension}"


class GroupView(WithAvailable, ScopedView):
    view_key = "groups"
    column_extra_row_actions = [credit_action("group")]
    column_list = (
        "name",
        "title",
        "reseller",
        "limit_type",
        "creditlimit",
        "curcredit",
        "available",
        "customer_multiple",
        "group_multiple",
        "allow_callback",
    )
    column_formatters = {
        "creditlimit": money,
        "curcredit": money,
        "available": available,
        **TOTALS,
    }
    column_searchable_list = ("name", "title")
    form_columns = (
        "name",
        "title",
        "tagline",
        "logo_path",
        "logo_shown",
        "accountcode",
        "customer_multiple",
        "group_multiple",
        "allow_callback",
        "reseller",
    )
    form_overrides = {"logo_path": FileUploadField}

    def create_form(self, obj=None):
        return self._with_logo(super().create_form(obj))

    def edit_form(self, obj=None):
        return self._with_logo(super().edit_form(obj))

    def _with_logo(self, form):
        field = form.logo_path
        field.base_path = current_app.config["ASTERBILL_LOGOS"]
        field.allowed_extensions = tuple(LOGO_SIGNATURES)
        field.namegen = logo_name
        field.validators = [*field.validators, logo_is_an_image]
        field.label.text = "Logo (PNG, JPEG or GIF, at most 512 KB)"
        if current_user.role != "admin":
            del form.reseller  # its own, set in fill_scope
        if current_user.role == "groupadmin":
            # what the shop pays its reseller is the reseller's to set, not the shop's
            del form.group_multiple
            del form.accountcode
            del form.allow_callback  # callback is the admin's or the reseller's to allow
        return form

    form_args = {
        "reseller": {
            "query_factory": lambda: db.session.scalars(
                select(Reseller).where(scope.visible(Reseller, current_user))
            ).all()
        }
    }

    def fill_scope(self, model, is_created) -> None:
        if current_user.role != "admin":
            model.reseller_id = current_user.reseller_id
            model.reseller = db.session.get(Reseller, current_user.reseller_id)

    def after_model_change(self, form, model, is_created):
        _provision_group(model)


class ClidView(WithAvailable, ScopedView):
    view_key = "clids"
    column_extra_row_actions = [credit_action("clid")]
    column_list = (
        "clid",
        "display",
        "kind",
        "group",
        "limit_type",
        "creditlimit",
        "curcredit",
        "available",
        "deposit",
        "locked",
        "shown",
    )
    column_formatters = {
        "creditlimit": money,
        "curcredit": money,
        "available": available,
        **TOTALS,
        "deposit": money,
        "display": lambda v, c, m, n: escape(m.display),
    }
    column_searchable_list = ("clid", "display")
    column_filters = ("locked", "kind")
    form_columns = ("clid", "display", "kind", "group", "accountcode", "shown")
    form_args = {"group": {"query_factory": group_choices, "allow_blank": False}}
    form_overrides = {"kind": SelectField}
    form_args["kind"] = {
        "choices": [("booth", "booth"), ("extension", "extension"), ("card", "card")]
    }

    def fill_scope(self, model, is_created) -> None:
        old_number = inspect(model).attrs.clid.history.deleted
        model.asterbill_old_number = old_number[0] if old_number else None
        if model.group is None:
            raise ValidationError("a clid needs a group")
        model.asterbill_moved_from = _reseller_before_move(model)
        model.group_id = model.group.id
        if is_created and not model.pin:
            with db.session.no_autoflush:  # the new row may not be flushed without its PIN
                model.pin = new_pin(current_app.config["ASTERBILL_PIN_DIGITS"])

    def after_model_change(self, form, model, is_created):
        old = getattr(model, "asterbill_old_number", None)
        if old and old != model.clid:
            current_app.extensions["asterbill_credit"].forget_payer(old)
        moved_from = getattr(model, "asterbill_moved_from", None)
        if moved_from is not None:  # its balances, unbilled calls and totals go with it
            from workers.booth_move import move_live_state

            credit = current_app.extensions["asterbill_credit"]
            move_live_state(credit, model.id, moved_from, model.group.reseller_id)
        _provision_clid(model)

    def after_model_delete(self, model):
        current_app.extensions["asterbill_credit"].forget_payer(model.clid)


def _reseller_before_move(clid: Clid) -> int | None:
    """The reseller a booth leaves when its new shop belongs to another one (None: no such
    move); refused while it has calls running or not yet settled (workers/booth_move.py)."""
    from workers.booth_move import check_move

    # group_id still holds the shop it leaves: the relationship reaches it at the flush
    if clid.id is None or not clid.group_id or clid.group_id == clid.group.id:
        return None
    with db.session.no_autoflush:
        old = db.session.get(AccountGroup, clid.group_id).reseller_id
    new = clid.group.reseller_id
    if old == new:
        return None
    try:
        check_move(current_app.extensions["asterbill_credit"], clid.id, old, new)
    except InvalidInput as exc:
        raise ValidationError(str(exc)) from None
    return old


def new_pin(digits: int) -> str:
    """A PIN from the `secrets` module, unique among clids."""
    while True:
        pin = "".join(secrets.choice("0123456789") for _ in range(digits))
        if db.session.scalar(select(Clid.id).where(Clid.pin == pin)) is None:
            return pin


RATE_COLUMNS = (*ratefiles.FIELDS, "reseller_id", "group_id")  # a rate row and its scope


class RateView(ScopedView):
    table = ""
    column_list = form_columns = RATE_COLUMNS
    column_formatters = {"connectcharge": exact, "rateinitial": exact}
    column_searchable_list = ("dialprefix", "destination")
    column_filters = ("reseller_id", "group_id", "dialprefix")
    form_overrides = rate_form.TEXT_FIELDS

    def fill_scope(self, model, is_created) -> None:
        # where the row was before this change: that Redis field must lose it
        model.asterbill_old_key = rate_form.old_key(self.table, model)
        if current_user.role == "reseller":
            model.reseller_id = current_user.reseller_id
            if getattr(model, "group_id", 0):
                owned = db.session.get(AccountGroup, model.group_id)
                if owned is None or owned.reseller_id != current_user.reseller_id:
                    raise ValidationError("that group is not yours")
        elif current_user.role == "groupadmin":
            model.reseller_id, model.group_id = current_user.reseller_id, current_user.group_id
        rate_form.validate_rate(self.table, model)

    def after_model_change(self, form, model, is_created):
        # one row changed: just its field(s) in Redis, never a rebuild of the whole scope
        old = getattr(model, "asterbill_old_key", None)
        rate_form.push_to_redis([rate_form.new_key(self.table, model), *([old] if old else [])])

    def on_model_delete(self, model):
        super().on_model_delete(model)
        model.asterbill_old_key = rate_form.new_key(self.table, model)

    def after_model_delete(self, model):
        rate_form.push_to_redis([model.asterbill_old_key])


class CustomerRateView(RateView):
    view_key, table = "customer_rates", "customer"


class CallshopRateView(RateView):
    view_key, table = "callshop_rates", "callshop"


class ResellerRateView(RateView):
    view_key, table = "reseller_rates", "reseller"
    column_list = form_columns = tuple(c for c in RATE_COLUMNS if c != "group_id")
    column_filters = ("reseller_id", "dialprefix")


PRICES = ("credit", "callshop_credit", "reseller_credit")


def price(view, context, model, name):
    """A CDR price, or nothing for a role that may not see it (an operator: customer only)."""
    return money(view, context, model, name) if name in scope.price_columns(current_user) else ""


class CdrView(ScopedView):
    view_key = "cdrs"
    can_export = True
    export_types = ("csv",)
    column_default_sort = ("calldate", True)
    column_list = (
        "calldate",
        "src",
        "dst",
        "destination",
        "clid_id",
        "group_id",
        "billsec",
        "disposition",
        *PRICES,
        "billing_status",
        "review_reason",
    )
    column_searchable_list = ("dst", "src", "destination", "uniqueid")
    column_filters = (
        "calldate",
        "reseller_id",
        "group_id",
        "clid_id",
        "dst",
        "destination",
        "disposition",
        "billing_status",
    )
    column_formatters = dict.fromkeys(PRICES, price)
    column_formatters_export = dict.fromkeys(PRICES, price)
    # Which prices (and rate rows) a role sees: admin.columns, for lists, details, sorting,
    # filters, search and export alike (the formatters blank them as well).
    column_details_list = [c.key for c in Cdr.__table__.columns]


class CreditHistoryView(ScopedView):
    view_key = "credit_history"
    column_default_sort = ("created_at", True)
    column_list = (
        "created_at",
        "level",
        "reseller_id",
        "group_id",
        "clid_id",
        "operation",
        "balance_before",
        "amount",
        "comment",
        "account_id",
    )
    column_formatters = {
        "balance_before": money,
        "amount": money,
        "comment": lambda v, c, m, n: escape(m.comment),
    }
    column_filters = ("created_at", "level", "operation", "clid_id", "group_id")


def _provision_clid(clid: Clid) -> None:
    """Push the booth's configuration to Redis at once (its balances are kept)."""
    from workers.provision import provision_clid

    provision_clid(current_app.extensions["asterbill_credit"], clid)


def _provision_group(group: AccountGroup) -> None:
    for clid in group.clids:
        _provision_clid(clid)


def register(admin) -> None:
    session = db  # Flask-Admin 2.2 takes the Flask-SQLAlchemy object
    admin.add_view(AccountView(Account, session, name=_l("Accounts"), endpoint="accounts"))
    admin.add_view(ResellerView(Reseller, session, name=_l("Resellers"), endpoint="resellers"))
    admin.add_view(GroupView(AccountGroup, session, name=_l("Callshops"), endpoint="groups"))
    admin.add_view(ClidView(Clid, session, name=_l("Booths"), endpoint="clids"))
    for view, model, name, endpoint in (
        (CustomerRateView, CustomerRate, _l("Customer rates"), "customer_rates"),
        (CallshopRateView, CallshopRate, _l("Callshop rates"), "callshop_rates"),
        (ResellerRateView, ResellerRate, _l("Reseller rates"), "reseller_rates"),
    ):
        admin.add_view(view(model, session, name=name, endpoint=endpoint, category=_l("Rates")))
    admin.add_view(CdrView(Cdr, session, name=_l("CDRs"), endpoint="cdrs"))
    admin.add_view(
        CreditHistoryView(
            CreditHistory, session, name=_l("Credit history"), endpoint="credit_history"
        )
    )
