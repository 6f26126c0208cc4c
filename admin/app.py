"""Flask app factory. For now it serves the health check that monitoring and `asterbill run`
use; the back office is added on top of this factory."""

from __future__ import annotations

from flask import Flask, jsonify

from ops import redis_server
from ops.errors import ServiceUnavailable
from ops.settings import Settings
from schema import migrate
from schema.db import check_database, make_engine


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = settings.secret_key or None
    engine = make_engine(settings.database_url)
    client = redis_server.connect(settings.redis_url, socket_timeout=2)

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
