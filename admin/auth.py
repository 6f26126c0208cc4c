"""Who is asking: back-office accounts and booth users, logins, and failed-login limits.

Two kinds of user share Flask-Login: an `Account` (admin, reseller, groupadmin, operator; id
`a<id>`) and a booth / extension user (a `Clid` logged in with its number and PIN; id `c<id>`),
who sees only the portal. Failed logins are counted in Redis per name and per address; after
`MAX_FAILURES` within `WINDOW_S` the login is refused without checking the password.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.security import check_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin.extensions import db
from schema import Account, Clid

MAX_FAILURES = 5
WINDOW_S = 15 * 60
# Checked when the name is unknown, so an unknown name costs the same time as a wrong password.
DUMMY_HASH = "scrypt:32768:8:1$dummysaltdummy$" + "0" * 128

login_manager = LoginManager()
login_manager.login_view = "auth.login"
bp = Blueprint("auth", __name__)


@dataclass
class User:
    """The logged-in person, for views: role and scope, never trusted from the request."""

    id: str
    name: str
    role: str  # admin | reseller | groupadmin | operator | clid
    reseller_id: int | None
    group_id: int | None
    clid_id: int | None = None
    language: str = "en"
    account_id: int | None = None
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return self.id

    @classmethod
    def of_account(cls, a: Account) -> User:
        return cls(
            f"a{a.id}", a.username, a.role, a.reseller_id, a.group_id, None, a.language, a.id
        )

    @classmethod
    def of_clid(cls, c: Clid) -> User:
        return cls(f"c{c.id}", c.clid, "clid", c.group.reseller_id, c.group_id, c.id)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    number = user_id[1:]
    if not number.isdigit():
        return None
    if user_id.startswith("a"):
        account = db.session.get(Account, int(number))
        return User.of_account(account) if account is not None and account.active else None
    if user_id.startswith("c"):
        clid = db.session.get(Clid, int(number))
        return User.of_clid(clid) if clid is not None else None
    return None


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=200)])


def _limiter_keys(name: str) -> list[str]:
    prefix = current_app.config["ASTERBILL_KEY_PREFIX"]
    return [f"{prefix}:login-fail:name:{name}", f"{prefix}:login-fail:addr:{request.remote_addr}"]


def _blocked(name: str) -> bool:
    redis = current_app.extensions["asterbill_redis"]
    counts = redis.mget(_limiter_keys(name))
    return any(int(c or 0) >= MAX_FAILURES for c in counts)


def _failed(name: str) -> None:
    redis = current_app.extensions["asterbill_redis"]
    pipe = redis.pipeline()
    for key in _limiter_keys(name):
        pipe.incr(key)
        pipe.expire(key, WINDOW_S)
    pipe.execute()


def _log_in(form: LoginForm, find, check, make_user, next_endpoint: str):
    name = form.username.data.strip()
    if _blocked(name):
        flash(_("Too many failed logins; try again in 15 minutes."), "error")
        return None
    row = find(name)
    if row is None or not check(row, form.password.data):
        _failed(name)
        flash(_("Wrong name or password."), "error")
        return None
    current_app.extensions["asterbill_redis"].delete(_limiter_keys(name)[0])
    login_user(make_user(row))
    return redirect(url_for(next_endpoint))


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if form.validate_on_submit():

        def check(account: Account, password: str) -> bool:
            return account.active and check_password_hash(account.password_hash, password)

        def find(name: str) -> Account | None:
            account = db.session.scalar(select(Account).where(Account.username == name))
            if account is None:
                check_password_hash(DUMMY_HASH, "x")
            return account

        done = _log_in(form, find, check, User.of_account, "admin.index")
        if done is not None:
            db.session.execute(
                Account.__table__.update()
                .where(Account.username == form.username.data.strip())
                .values(last_login_at=datetime.now(UTC).replace(tzinfo=None))
            )
            db.session.commit()
            return done
    return render_template("login.html", form=form, title="Back office", action="auth.login")


@bp.route("/portal/login", methods=["GET", "POST"])
def portal_login():
    form = LoginForm()
    form.username.label.text = "Booth or extension number"
    form.password.label.text = "PIN"
    if form.validate_on_submit():

        def find(number: str) -> Clid | None:
            return db.session.scalar(select(Clid).where(Clid.clid == number))

        def check(clid: Clid, pin: str) -> bool:
            return hmac.compare_digest(clid.pin.encode(), pin.strip().encode())

        done = _log_in(form, find, check, User.of_clid, "portal.home")
        if done is not None:
            return done
    return render_template(
        "login.html", form=form, title="Booth portal", action="auth.portal_login"
    )


@bp.post("/logout")
def logout():
    portal = getattr(current_user, "role", "") == "clid"
    logout_user()
    return redirect(url_for("auth.portal_login" if portal else "auth.login"))


@bp.post("/language")
@login_required
def language():
    """A back-office user's language (English or Simplified Chinese), kept on the account."""
    chosen = request.form.get("language", "en")
    if chosen in ("en", "zh") and current_user.account_id is not None:
        db.session.execute(
            Account.__table__.update()
            .where(Account.id == current_user.account_id)
            .values(language=chosen)
        )
        db.session.commit()
    return redirect(url_for("admin.index"))
