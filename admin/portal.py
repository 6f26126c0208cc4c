"""The booth / extension user portal: one clid's own record, calls and credit history,
read-only. A clid user (number + PIN) sees nothing else; back-office accounts never land here."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template
from flask_login import current_user, login_required
from sqlalchemy import func, select

from admin.extensions import db
from rating.money import format_micros, stored_micros
from schema import Cdr, Clid, CreditHistory

bp = Blueprint("portal", __name__, url_prefix="/portal")


@bp.get("/")
@login_required
def home():
    if current_user.role != "clid":
        abort(403)
    clid = db.session.get(Clid, current_user.clid_id)
    calls = db.session.scalars(
        select(Cdr).where(Cdr.clid_id == clid.id).order_by(Cdr.calldate.desc()).limit(200)
    ).all()
    history = db.session.scalars(
        select(CreditHistory)
        .where(CreditHistory.clid_id == clid.id)
        .order_by(CreditHistory.created_at.desc())
        .limit(200)
    ).all()
    total = db.session.scalar(select(func.sum(Cdr.credit)).where(Cdr.clid_id == clid.id))
    decimals = current_app.config["ASTERBILL_DISPLAY_DECIMALS"]

    def money(value) -> str:
        return format_micros(stored_micros(value), decimals) if value is not None else ""

    return render_template(
        "portal.html",
        clid=clid,
        calls=calls,
        history=history,
        total=money(total) if total is not None else money(clid.curcredit * 0),
        money=money,
        currency=current_app.config["ASTERBILL_CURRENCY"],
    )


@bp.post("/language")
@login_required
def language():
    """A booth user's language, kept for its session (booths have no account row to hold it);
    the portal follows it before the browser's."""
    from flask import redirect, request, session, url_for

    from admin.accounts import LANGUAGES

    if current_user.role != "clid":
        abort(403)
    chosen = request.form.get("language", "en")
    if chosen in LANGUAGES:
        session["portal_language"] = chosen
    return redirect(url_for("portal.home"))
