"""Who is asking: back-office accounts and booth users, logins, and failed-login limits.

Two kinds of user share Flask-Login: an `Account` (admin, reseller, groupadmin, operator; id
`a<id>.<session version>`) and a booth / extension user (a `Clid` logged in with its number
and PIN; id `c<id>.<session version>`), who sees only the portal. A session is valid while its
version is the row's: logout and a password change raise the version, so a copied cookie
stops working at once. Every login starts a new session (no token of the anonymous session
survives it). Failed logins are limited per kind, name and address (admin.login_limits), and
every failed login does the same password-hash work, whatever the reason it failed.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.security import check_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from admin.extensions import db
from admin.login_limits import WINDOW_S, LoginLimiter, booth_number, login_name
from schema import Account, Clid

# Checked when there is no real hash to check (unknown name, disabled account), so every
# failed login costs the same time as a wrong password.
DUMMY_HASH = "scrypt:32768:8:1$dummysaltdummy$" + "0" * 128
DUMMY_PIN = "0" * 20

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.blueprint_login_views = {"portal": "auth.portal_login"}
bp = Blueprint("auth", __name__)


@dataclass
class User:
    """The logged-in person, for views: role and scope, never trusted from the request."""

    id: str  # the session's id: kind, row id and session version (a12.3)
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
            f"a{a.id}.{a.session_version}",
            a.username,
            a.role,
            a.reseller_id,
            a.group_id,
            None,
            a.language,
            a.id,
        )

    @classmethod
    def of_clid(cls, c: Clid) -> User:
        return cls(
            f"c{c.id}.{c.session_version}", c.clid, "clid", c.group.reseller_id, c.group_id, c.id
        )


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The user of a session, if the session is still valid (its version is the row's)."""
    number, _, version = user_id[1:].partition(".")
    if not (number.isdigit() and version.isdigit()):
        return None  # also every session made before session versions existed
    if user_id.startswith("a"):
        account = db.session.get(Account, int(number))
        if account is None or not account.active or account.session_version != int(version):
            return None
        return User.of_account(account)
    if user_id.startswith("c"):
        clid = db.session.get(Clid, int(number))
        if clid is None or clid.session_version != int(version):
            return None
        return User.of_clid(clid)
    return None


def end_sessions(row: Account | Clid) -> None:
    """Every session of this account or booth user stops working (the caller commits)."""
    model = type(row)
    db.session.execute(
        model.__table__.update()
        .where(model.id == row.id)
        .values(session_version=model.session_version + 1)
    )
    db.session.expire(row)


def start_session(user: User) -> None:
    """A new session for a user who just proved who they are: nothing of the session before
    (its CSRF token included) survives."""
    session.clear()
    session.permanent = True  # PERMANENT_SESSION_LIFETIME applies from the first reply
    login_user(user)


def safe_next(raw: str | None, under: str = "/") -> str | None:
    """The page to go back to after a login, if it is a page of this site under `under`."""
    if not raw or "\\" in raw or any(ord(c) < 32 for c in raw):
        return None
    parts = urlsplit(raw)
    foreign = parts.scheme not in ("http", "https") or parts.netloc != request.host
    if (parts.scheme or parts.netloc) and foreign:
        return None
    path = parts.path
    if not path.startswith(under) or path.startswith("//"):
        return None
    return path + (f"?{parts.query}" if parts.query else "")


def limiter(kind: str) -> LoginLimiter:
    return LoginLimiter(
        current_app.extensions["asterbill_redis"],
        current_app.config["ASTERBILL_KEY_PREFIX"],
        kind,
        current_app.extensions.get("asterbill_clock", time.time),
    )


class LoginForm(FlaskForm):
    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


def _log_in(form: LoginForm, kind: str, find, check, make_user, next_url: str):
    """`check(row or None, secret)` must do the same work whether or not the row exists."""
    name = form.username.data.strip()
    limits = limiter(kind)
    wait_s = limits.address_wait_s(request.remote_addr)
    if wait_s:
        flash(
            _("Too many failed logins from your network; try again in %(s)d s.", s=wait_s),
            "error",
        )
        return None
    if limits.name_locked(name):
        flash(
            _("Too many failed logins; try again in %(minutes)d minutes.", minutes=WINDOW_S // 60),
            "error",
        )
        return None
    row = find(name)
    if not check(row, form.password.data) or row is None:
        limits.failed(name, request.remote_addr)
        flash(_("Wrong name or password."), "error")
        return None
    limits.succeeded(name)
    start_session(make_user(row))
    return redirect(next_url)


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    if form.validate_on_submit():

        def check(account: Account | None, password: str) -> bool:
            # the hash is checked for every name: unknown, disabled or active
            real = account is not None and account.active
            matches = check_password_hash(account.password_hash if real else DUMMY_HASH, password)
            return real and matches

        def find(name: str) -> Account | None:
            return db.session.scalar(select(Account).where(Account.username == login_name(name)))

        done = _log_in(
            form, "staff", find, check, User.of_account, next_url or url_for("admin.index")
        )
        if done is not None:
            if not next_url and current_user.role in ("groupadmin", "operator"):
                done = redirect(url_for("booths.landing"))  # the counter is their landing page
            db.session.execute(
                Account.__table__.update()
                .where(Account.id == current_user.account_id)
                .values(last_login_at=datetime.now(UTC).replace(tzinfo=None))
            )
            db.session.commit()
            return done
    return render_template(
        "login.html", form=form, title=_("Back office"), action="auth.login", next=next_url
    )


@bp.route("/portal/login", methods=["GET", "POST"])
def portal_login():
    form = LoginForm()
    form.username.label.text = _("Booth or extension number")
    form.password.label.text = _("PIN")
    next_url = safe_next(request.args.get("next"), under="/portal/")
    if form.validate_on_submit():

        def find(number: str) -> Clid | None:
            return db.session.scalar(select(Clid).where(Clid.clid == booth_number(number)))

        def check(clid: Clid | None, pin: str) -> bool:
            stored = clid.pin if clid is not None else DUMMY_PIN
            matches = hmac.compare_digest(stored.encode(), booth_number(pin).encode())
            return clid is not None and matches

        done = _log_in(
            form, "portal", find, check, User.of_clid, next_url or url_for("portal.home")
        )
        if done is not None:
            return done
    return render_template(
        "login.html",
        form=form,
        title=_("Booth portal"),
        action="auth.portal_login",
        next=next_url,
    )


@bp.post("/logout")
def logout():
    """Ends this user's sessions on the server (a copied cookie stops working), then this one."""
    portal = getattr(current_user, "role", "") == "clid"
    if current_user.is_authenticated:
        row = (
            db.session.get(Clid, current_user.clid_id)
            if portal
            else db.session.get(Account, current_user.account_id)
        )
        if row is not None:
            end_sessions(row)
            db.session.commit()
    logout_user()
    session.clear()
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
