"""Flask app factory: the health check, the back office (Flask-Admin), credit operations and
the booth / extension user portal. Security by default: CSRF on every form (Flask-WTF's
CSRFProtect also guards Flask-Admin's forms and actions), sessions that expire, a secret key
only from the environment (a random one per process when unset: sessions then end at a
restart), server-side role checks in every view (admin.scope)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, jsonify, request
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from flask_login import current_user

from admin import (
    auth,
    booth_page,
    credit_page,
    dead_letters,
    password_page,
    portal,
    rate_import,
    reports,
    views,
)
from admin.credit_operations_view import CreditOperationView
from admin.extensions import babel, csrf, db
from lua.credit import CreditEngine
from lua.keys import Keys
from ops import redis_server
from ops.errors import ServiceUnavailable
from ops.settings import Settings
from rating.book import RedisRateBook
from schema import CreditOperation, migrate
from schema.db import check_database, make_engine

LANGUAGES = {"en": "en", "zh": "zh_Hans_CN"}


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    engine = make_engine(settings.database_url)
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        SQLALCHEMY_DATABASE_URI=engine.url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        MAX_CONTENT_LENGTH=settings.import_max_bytes + 1024 * 1024,  # a rate deck and its form
        ASTERBILL_KEY_PREFIX=settings.key_prefix,
        ASTERBILL_DISPLAY_DECIMALS=settings.display_decimals,
        ASTERBILL_PIN_DIGITS=settings.pin_digits,
        ASTERBILL_CURRENCY=settings.currency,
        ASTERBILL_TIMEZONE=settings.timezone,
        ASTERBILL_UPLOADS=str(settings.data_dir / "uploads"),
        ASTERBILL_LOGOS=str(settings.data_dir / "logos"),
        ASTERBILL_BACKGROUND_IMPORT_BYTES=1024 * 1024,  # larger decks: a worker imports them
        ASTERBILL_IMPORT_MAX_BYTES=settings.import_max_bytes,
        ASTERBILL_IMPORT_MAX_ROWS=settings.import_max_rows,
    )
    client = redis_server.connect(settings.redis_url, socket_timeout=2)
    keys = Keys(settings.key_prefix)
    app.extensions["asterbill_redis"] = client
    app.extensions["asterbill_credit"] = CreditEngine(client, keys)
    app.extensions["asterbill_book"] = RedisRateBook(client, keys)

    if settings.trusted_proxies:  # the client's address and scheme as the proxies saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    for folder in ("ASTERBILL_UPLOADS", "ASTERBILL_LOGOS"):
        Path(app.config[folder]).mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_locale)
    auth.login_manager.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(portal.bp)
    app.register_blueprint(booth_page.bp)  # the operator's counter: /booths

    back_office = Admin(
        app,
        name="asterbill",
        theme=Bootstrap4Theme(swatch="default"),
        index_view=views.Home(url="/admin"),
    )
    views.register(back_office)
    dead_letters.register(back_office)  # issue 12: calls settlement could not write
    back_office.add_view(
        credit_page.CreditPage(name=lazy_pgettext("page", "Credit"), endpoint="credit")
    )
    back_office.add_view(password_page.PasswordPage(name=_l("Password"), endpoint="password"))
    back_office.add_view(reports.ReportPage(name=_l("Reports"), endpoint="reports"))
    back_office.add_view(  # every operation, lock to deposit, with who and when
        CreditOperationView(
            CreditOperation, db, name=_l("Credit operations"), endpoint="credit_operations"
        )
    )
    back_office.add_view(
        rate_import.RateImportPage(
            name=_l("Import / export"), endpoint="rate_import", category=_l("Rates")
        )
    )

    @app.before_request
    def keep_session_short():
        from flask import session

        session.permanent = True  # PERMANENT_SESSION_LIFETIME applies

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.get("/")
    def root():
        from flask import redirect, url_for

        return redirect(url_for("admin.index"))

    @app.get("/logos/<name>")
    def logo(name: str):
        """A callshop's logo (for its booth page); the name is random, the type checked."""
        from flask import send_from_directory

        return send_from_directory(app.config["ASTERBILL_LOGOS"], name)

    @app.get("/healthz")
    def healthz():
        """Database reachable and migrated, Redis answering: 200, else 503 with the reason."""
        report: dict[str, str] = {}
        try:
            check_database(engine)
            current, head = migrate.current_revision(engine), migrate.head_revision()
            report["database"] = "ok" if current == head else f"schema {current} != {head}"
        except ServiceUnavailable as exc:
            report["database"] = str(exc)
        try:
            redis_server.check(client)
            report["redis"] = "ok"
        except ServiceUnavailable as exc:
            report["redis"] = str(exc)
        healthy = all(v == "ok" for v in report.values())
        return jsonify(status="ok" if healthy else "degraded", **report), 200 if healthy else 503

    return app


def _locale() -> str:
    """The user's language (accounts choose theirs), else the browser's, else English."""
    language = getattr(current_user, "language", None) if current_user else None
    if getattr(current_user, "role", None) == "clid":  # a booth user: its portal choice
        from flask import session

        language = session.get("portal_language")
    if language in LANGUAGES:
        return LANGUAGES[language]
    best = request.accept_languages.best_match(list(LANGUAGES))
    return LANGUAGES.get(best or "en", "en")
