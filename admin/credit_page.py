"""Charge / refund / credit limit / limit type / lock / deposit, with a confirmation step,
through the credit service (workers/credit_ops.py: MySQL row + history, then Redis, once per
operation id). Curcredit is never a form field anywhere.

The operation id is made when the form is shown and travels through the confirmation, so a
double submit (or a reload of the confirmation) applies the operation once.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from admin import display, scope
from admin.extensions import db
from ops.errors import InvalidInput
from schema import AccountGroup, Clid, Reseller
from workers.credit_ops import CreditRequest, perform, validate

MODELS = {"clid": Clid, "group": AccountGroup, "reseller": Reseller}
KINDS = {
    "charge": _l("Charge (money received)"),
    "refund": _l("Refund (money paid back)"),
    "set_limit": _l("Set credit limit"),
    "set_limit_type": _l("Set limit type"),
    "lock": _l("Lock"),
    "unlock": _l("Unlock"),
    "set_deposit": _l("Set booth deposit (empty: none)"),
}
CLID_ONLY = ("lock", "unlock", "set_deposit")
# The counter's work: take cash, lock and unlock a booth, set its deposit. No refunds, no limits.
OPERATOR_KINDS = ("charge", "lock", "unlock", "set_deposit")
AMOUNT = re.compile(r"(-?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)")  # ASCII digits only


class CreditForm(FlaskForm):
    kind = SelectField("Operation", choices=list(KINDS.items()))
    amount = StringField("Amount", validators=[Optional(), Length(max=24)])
    limit_type = SelectField(
        "Limit type", choices=[("none", "none"), ("prepaid", "prepaid"), ("postpaid", "postpaid")]
    )
    comment = StringField("Comment", validators=[Optional(), Length(max=255)])
    op_id = HiddenField(validators=[DataRequired(), Length(max=64)])
    confirmed = HiddenField()


def may_operate(user, level: str, row) -> bool:
    """admin: any level; a reseller: its groups and booths; a groupadmin: its booths."""
    if user.role == "admin":
        return True
    if user.role == "reseller":
        return level in ("group", "clid") and scope.writable(row, user)
    if user.role == "groupadmin":
        return level == "clid" and scope.writable(row, user)
    if user.role == "operator":  # its own shop's booths (OPERATOR_KINDS only)
        return level == "clid" and row.group_id == user.group_id
    return False


def kinds_for(user, level: str) -> list[tuple[str, str]]:
    """The operations a role may choose on a level (the form refuses any other)."""
    allowed = OPERATOR_KINDS if user.role == "operator" else tuple(KINDS)
    return [(k, KINDS[k]) for k in allowed if level == "clid" or k not in CLID_ONLY]


def parse_amount(text: str) -> Decimal:
    """An amount typed by a person, or InvalidInput with a message for a person."""
    match = AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidInput(_("Enter an amount such as 12.50 (digits 0-9 and a decimal point)."))
    if match.group(1):
        raise InvalidInput(_("The amount may not be negative."))
    value = Decimal(match.group(2))
    if value != value.quantize(Decimal("0.000001")):
        raise InvalidInput(_("An amount has at most 6 decimals."))
    return value


def summary(row) -> dict[str, str]:
    """A level's credit as people read it: limit, used and available, to the display decimals."""
    return {
        "limit": display.money_text(row.creditlimit),
        "used": display.money_text(row.curcredit),
        "available": display.money_text(display.available(row)),
        "currency": current_app.config["ASTERBILL_CURRENCY"],
    }


class CreditPage(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and current_user.role in (
            "admin",
            "reseller",
            "groupadmin",
            "operator",
        )

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        abort(403)

    def is_visible(self) -> bool:
        return False  # reached from a row's "credit" link, not the menu

    @expose("/")
    def index(self):
        return redirect(url_for("clids.index_view"))

    @expose("/<level>/<int:target_id>", methods=("GET", "POST"))
    def operate(self, level: str, target_id: int):
        model = MODELS.get(level)
        if model is None:
            abort(404)
        row = db.session.get(model, target_id)
        if row is None or not db.session.scalar(
            db.select(model.id).where(model.id == target_id, scope.visible(model, current_user))
        ):
            abort(404)
        if not may_operate(current_user, level, row):
            abort(403)
        form = CreditForm()
        form.kind.choices = kinds_for(current_user, level)
        choices = [k for k, _label in form.kind.choices]
        page = {"row": row, "level": level, "credit": summary(row), "kinds": KINDS}
        page["show_limit_type"] = "set_limit_type" in choices
        if request.method == "GET":
            form.op_id.data = uuid.uuid4().hex
        if not form.validate_on_submit():
            return self.render("credit.html", form=form, step="edit", **page)
        request_ = self._request(form, level, target_id)
        if request_ is None:
            return self.render("credit.html", form=form, step="edit", **page)
        if form.confirmed.data != "yes":
            form.confirmed.data = "yes"
            return self.render("credit.html", form=form, step="confirm", op=request_, **page)
        try:
            result = perform(_factory(), _credit(), request_)
        except InvalidInput as exc:
            flash(str(exc), "error")
            return self.render("credit.html", form=form, step="edit", **page)
        if result.replayed:
            flash(_("This operation was already done; nothing changed."), "info")
        else:
            db.session.rollback()  # a new snapshot: the credit service committed in its own
            db.session.refresh(row)
            flash(
                _(
                    "%(operation)s: done. Credit used %(before)s -> %(after)s, "
                    "available %(available)s %(currency)s.",
                    operation=KINDS[request_.kind],
                    before=display.money_text(result.curcredit_before),
                    after=display.money_text(result.curcredit_after),
                    available=display.money_text(display.available(row)),
                    currency=current_app.config["ASTERBILL_CURRENCY"],
                )
                + ("" if result.applied else " " + _("The live balance follows within seconds.")),
                "success",
            )
        back = {"clid": "clids", "group": "groups", "reseller": "resellers"}[level]
        return redirect(url_for(f"{back}.index_view"))

    def _request(self, form: CreditForm, level: str, target_id: int) -> CreditRequest | None:
        kind = form.kind.data
        if kind in CLID_ONLY and level != "clid":
            form.kind.errors = [*form.kind.errors, _("Only for booths.")]
            return None
        amount = None
        text = (form.amount.data or "").strip()
        if kind in ("charge", "refund", "set_limit") or (kind == "set_deposit" and text):
            try:
                amount = parse_amount(text)  # ASCII digits only (not "٣")
            except InvalidInput as exc:
                form.amount.errors = [*form.amount.errors, str(exc)]
                return None
        request_ = CreditRequest(
            kind,
            level,
            target_id,
            amount=amount,
            value=form.limit_type.data if kind == "set_limit_type" else None,
            comment=form.comment.data or "",
            account_id=current_user.account_id,
            op_id=form.op_id.data,
        )
        try:
            validate(request_)
        except InvalidInput as exc:
            form.amount.errors = [*form.amount.errors, str(exc)]
            return None
        return request_


def _factory():
    """A session factory on the app's database, for the credit service's own transactions
    (made once per app)."""
    from sqlalchemy.orm import sessionmaker

    factory = current_app.extensions.get("asterbill_sessions")
    if factory is None:
        factory = sessionmaker(bind=db.engine, expire_on_commit=False)
        current_app.extensions["asterbill_sessions"] = factory
    return factory


def _credit():
    return current_app.extensions["asterbill_credit"]
