"""The operator's counter: `/booths` (the landing page of groupadmin and operator), one tile per
shown booth with its live state, pushed by Server-Sent Events (admin.booth_stream), and the
counter actions (lock, unlock, limit, deposit through workers/credit_ops.py; hang-up through
the listener's command stream, admin.booth_commands).

Scoped like every view: a callshop the user may not see is 404, page and stream alike. An
operator sees customer prices only: the shop's cost is left out of the page and the stream.
"""

from __future__ import annotations

import re
import time
import uuid

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from admin import booth_commands, booth_state, scope
from admin.booth_state import Shop
from admin.booth_stream import Hub
from admin.credit_page import _credit, _factory, kinds_for, parse_amount
from admin.extensions import db
from ops.errors import InvalidInput
from rating.money import format_micros
from schema import AccountGroup, Clid
from workers.credit_ops import CreditRequest, perform

bp = Blueprint("booths", __name__, url_prefix="/booths")
COMMAND_ID = re.compile(r"[0-9a-f]{32}")

ROLES = ("admin", "reseller", "groupadmin", "operator")
COST_ROLES = ("admin", "reseller", "groupadmin")
STATES = {
    "idle": _l("idle"),
    "in_call": _l("in call"),
    "locked": _l("locked"),
    "no_credit": _l("out of credit"),
    "unbilled": _l("unbilled"),
}
# The counter's actions on a tile (each still checked by kinds_for for the role).
TILE_KINDS = {
    "lock": _l("Lock"),
    "unlock": _l("Unlock"),
    "set_limit": _l("Set limit"),
    "set_deposit": _l("Set deposit"),
}


def _allowed() -> None:
    if not current_user.is_authenticated:
        abort(redirect(url_for("auth.login", next=request.full_path)))
    if current_user.role not in ROLES:
        abort(403)


def _shop_row(group_id: int) -> AccountGroup:
    """The callshop if the user may see it, else 404 (never 403: its existence is private)."""
    _allowed()
    found = db.session.scalar(
        select(AccountGroup).where(
            AccountGroup.id == group_id, scope.visible(AccountGroup, current_user)
        )
    )
    if found is None:
        abort(404)
    return found


def _booths(group: AccountGroup) -> list[Clid]:
    """Shown booths, ordered and labelled by display name (then number)."""
    return list(
        db.session.scalars(
            select(Clid)
            .where(Clid.group_id == group.id, Clid.shown.is_(True))
            .order_by(Clid.display, Clid.clid, Clid.id)
        )
    )


def _shop(group: AccountGroup, booths: list[Clid]) -> Shop:
    return Shop(group.reseller_id, group.id, tuple(sorted(b.id for b in booths)))


def _show_cost() -> bool:
    return current_user.role in COST_ROLES


def hub() -> Hub:
    """This process's readers (one per callshop), made on first use."""
    found = current_app.extensions.get("asterbill_booth_hub")
    if found is None:
        factory = _factory()

        def settled(group_id: int) -> dict:
            with factory() as session:
                return booth_state.unbilled_today(session, group_id, booth_state.start_of_today())

        credit = _credit()
        found = Hub(credit.client, credit.keys, settled)
        current_app.extensions["asterbill_booth_hub"] = found
    return found


def current_state(group: AccountGroup, booths: list[Clid]) -> dict:
    """The state now, read directly (the page's first paint and the plain-refresh path)."""
    shop = _shop(group, booths)
    h = hub()
    live = booth_state.read_redis(h.client, h.keys, shop)
    state = booth_state.snapshot(shop, live, h.settled(group.id), int(time.time() * 1000))
    return booth_state.for_role(state, _show_cost())


@bp.get("/")
def landing():
    _allowed()
    if current_user.role in ("groupadmin", "operator"):
        return redirect(url_for("booths.page", group_id=current_user.group_id))
    shops = db.session.scalars(
        select(AccountGroup)
        .where(scope.visible(AccountGroup, current_user))
        .order_by(AccountGroup.name)
    ).all()
    return render_template("booth_shops.html", shops=shops)


@bp.get("/<int:group_id>")
def page(group_id: int):
    group = _shop_row(group_id)
    booths = _booths(group)
    state = current_state(group, booths)
    kinds = {k for k, _label in kinds_for(current_user, "clid")}
    return render_template(
        "booths.html",
        group=group,
        booths=booths,
        state=state,
        states={k: str(v) for k, v in STATES.items()},
        text={
            "paid_until": _("paid to %s"),
            "on": _("on"),
            "off": _("off (the page reloads every 5 s)"),
            "waiting": _("Hanging up..."),
            "confirm_hangup": _("Hang up this call?"),
        },
        money=_money,
        clock=_clock,
        new_op_id=lambda: uuid.uuid4().hex,
        actions={k: v for k, v in TILE_KINDS.items() if k in kinds},
        show_cost=_show_cost(),
        decimals=current_app.config["ASTERBILL_DISPLAY_DECIMALS"],
        currency=current_app.config["ASTERBILL_CURRENCY"],
    )


@bp.get("/<int:group_id>/state")
def state(group_id: int):
    group = _shop_row(group_id)
    return jsonify(current_state(group, _booths(group)))


@bp.get("/<int:group_id>/stream")
def stream(group_id: int):
    group = _shop_row(group_id)
    shop = _shop(group, _booths(group))
    body = hub().stream(shop, _show_cost())
    # An open page must hold no database connection (nor its transaction's locks)
    db.session.remove()
    return Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _booth_row(group: AccountGroup, clid_id: int) -> Clid:
    row = db.session.get(Clid, clid_id)
    if row is None or row.group_id != group.id:
        abort(404)
    return row


@bp.post("/<int:group_id>/booth/<int:clid_id>/credit")
def credit(group_id: int, clid_id: int):
    """Lock / unlock / limit / deposit of one booth, once per op id (a double click: once)."""
    group = _shop_row(group_id)
    row = _booth_row(group, clid_id)
    kind = request.form.get("kind", "")
    if kind not in TILE_KINDS or kind not in {k for k, _label in kinds_for(current_user, "clid")}:
        abort(403)
    amount = None
    text = (request.form.get("amount") or "").strip()
    try:
        if kind == "set_limit" or (kind == "set_deposit" and text):
            amount = parse_amount(text)
        result = perform(
            _factory(),
            _credit(),
            CreditRequest(
                kind,
                "clid",
                row.id,
                amount=amount,
                comment=_("booth page"),
                account_id=current_user.account_id,
                op_id=(request.form.get("op_id") or "")[:64],
            ),
        )
    except InvalidInput as exc:
        flash(str(exc), "error")
    else:
        label = TILE_KINDS[kind]
        if result.replayed:
            flash(_("This operation was already done; nothing changed."), "info")
        else:
            flash(_("%(operation)s: done (%(booth)s).", operation=label, booth=_label(row)))
    return redirect(url_for("booths.page", group_id=group.id))


@bp.post("/<int:group_id>/booth/<int:clid_id>/hangup")
def hangup(group_id: int, clid_id: int):
    """Ask the listener to hang up the booth's live call; the page polls the reply."""
    group = _shop_row(group_id)
    row = _booth_row(group, clid_id)
    call_id = request.form.get("call_id", "")
    h = hub()
    live = booth_state.read_redis(h.client, h.keys, _shop(group, [row]))
    if call_id not in live["calls"]:
        return jsonify(status="no_call", message=_("This booth has no live call now.")), 409
    command_id = booth_commands.send_hangup(
        h.client, h.keys.prefix, call_id, current_user.account_id
    )
    return jsonify(status="sent", command=command_id)


@bp.get("/<int:group_id>/command/<command_id>")
def command(group_id: int, command_id: str):
    """A hang-up's result: done, failed, waiting, or no listener (after 5 s without one)."""
    _shop_row(group_id)
    if not COMMAND_ID.fullmatch(command_id):
        abort(404)
    h = hub()
    reply = booth_commands.result(h.client, h.keys.prefix, command_id)
    messages = {
        "done": _("The call was hung up."),
        "failed": _("The hang-up failed: %(why)s"),
        "waiting": _("Waiting for the listener..."),
        "no_listener": _("No listener is running: the call cannot be hung up from here."),
    }
    return jsonify(
        status=reply["status"], message=messages[reply["status"]] % {"why": reply.get("why", "")}
    )


def _money(micros) -> str:
    if micros == "" or micros is None:
        return ""
    return format_micros(int(micros), current_app.config["ASTERBILL_DISPLAY_DECIMALS"])


def _clock(seconds: int) -> str:
    """m:ss or h:mm:ss, as the page's script writes it."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _label(row: Clid) -> str:
    return row.display or row.clid
