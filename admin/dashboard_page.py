"""What the home page needs to show the dashboard (admin/dashboard.py), in request context."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app
from flask_login import current_user

from admin import display
from admin.dashboard import build
from admin.extensions import db
from admin.reports import LABELS, cell

SHOWN = ("calls", "answered", "billsec", "credit", "shop_margin", "reseller_margin")


def home_dashboard() -> dict:
    if getattr(current_user, "role", None) not in ("admin", "reseller", "groupadmin", "operator"):
        return {"board": None}
    tz = ZoneInfo(current_app.config.get("ASTERBILL_TIMEZONE", "UTC"))
    credit = current_app.extensions["asterbill_credit"]
    board = build(db.session, current_user, credit, tz, datetime.now(UTC))
    return {
        "board": board,
        "dash_names": [n for n in SHOWN if n in board.columns],
        "dash_labels": LABELS,
        "dash_cell": lambda name, row: cell(name, getattr(row, name)),
        "dash_money": display.money_text,
    }
