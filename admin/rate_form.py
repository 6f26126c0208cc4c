"""The rate form of the back office: the same validator as every other way a rate enters
(rating.store.validate_row and check_target: import page, `asterbill rates import`, seed),
and the live book updated row by row after the save (rating.store.refresh_keys), never by
rebuilding the whole scope.

A save is committed before Redis is touched; if Redis then fails, the row is saved anyway and
the user is told that the live book follows at the next sync (no HTTP 500 for a saved row).
"""

from __future__ import annotations

import logging

from flask import current_app, flash
from sqlalchemy import inspect, true
from sqlalchemy.orm import Session
from wtforms import StringField
from wtforms.validators import ValidationError

from admin.extensions import db
from ops.errors import InvalidInput
from rating import ratefiles
from rating.store import MODELS, RateKey, Target, check_target, refresh_keys, validate_row

log = logging.getLogger("asterbill.admin")

# Typed as text so the validator sees what the user typed (no silent rounding, no "٣" as 3).
TEXT_FIELDS = dict.fromkeys(ratefiles.FIELDS, StringField)


def validate_rate(table: str, model) -> None:
    """Check and normalise a rate row from the form in place; ValidationError with the
    validator's message when it is refused (nothing is saved)."""
    cells = {f: getattr(model, f) for f in ratefiles.FIELDS}
    target = Target(table, model.reseller_id or 0, getattr(model, "group_id", 0) or 0)
    with db.session.no_autoflush:
        try:
            values = validate_row(cells)
            check_target(db.session, target)
        except InvalidInput as exc:
            raise ValidationError(str(exc)) from None
        rate = MODELS[table]
        scope = [rate.reseller_id == target.reseller_id]
        if table != "reseller":
            scope.append(rate.group_id == target.group_id)
        other = db.session.scalar(
            db.select(rate.id).where(
                *scope,
                rate.dialprefix == values["dialprefix"],
                rate.numlen == values["numlen"],
                rate.id != model.id if model.id is not None else true(),
            )
        )
    if other is not None:
        raise ValidationError(
            f"a rate for {values['dialprefix']} (numlen {values['numlen']}) exists already "
            "in this scope: change that one"
        )
    for field, value in values.items():
        setattr(model, field, value)
    model.reseller_id = target.reseller_id
    if table != "reseller":
        model.group_id = target.group_id


def old_key(table: str, model) -> RateKey | None:
    """Where the row was in Redis before this change (None for a new row)."""
    state = inspect(model)
    if state.transient or state.pending:
        return None

    def before(name: str):
        if name not in state.attrs:
            return 0
        deleted = state.attrs[name].history.deleted
        return deleted[0] if deleted else getattr(model, name)

    return RateKey(
        table,
        before("reseller_id") or 0,
        before("group_id") or 0,
        str(before("dialprefix")),  # as stored: a legacy " 0041 " is that field in Redis
        int(before("numlen") or 0),
    )


def new_key(table: str, model) -> RateKey:
    return RateKey(
        table,
        model.reseller_id or 0,
        getattr(model, "group_id", 0) or 0,
        model.dialprefix,
        model.numlen,
    )


def push_to_redis(keys: list[RateKey]) -> None:
    """After the commit: these rows in Redis become what MySQL holds, read in a new session
    (its snapshot is taken inside the book's lock, see rating/store.py)."""
    try:
        with Session(db.engine) as fresh:
            refresh_keys(fresh, current_app.extensions["asterbill_book"], keys)
    except Exception:
        log.exception("rate saved in MySQL, not yet in Redis: %s", keys)
        flash(
            "Saved. The live rate book could not be updated just now; "
            "`asterbill rates sync` (or the next sync) brings it up to date.",
            "warning",
        )
