"""Run the Alembic migrations of schema/migrations against an Engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ops.errors import ServiceUnavailable
from schema.db import database_error

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        raise database_error(engine, exc) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, command.downgrade, revision)


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (developers only)."""
    _run(engine, lambda cfg, msg: command.revision(cfg, msg, autogenerate=True), message)


def _run(engine: Engine, action, argument: str) -> None:
    try:
        with engine.begin() as conn:
            action(_config(conn), argument)
    except DBAPIError as exc:
        raise database_error(engine, exc) from None


def require_head(engine: Engine) -> str:
    """The current revision, or ServiceUnavailable if the database is not fully migrated."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise ServiceUnavailable(
            f"database schema is at {current or 'base (empty)'}, "
            f"the code needs {head}: run `asterbill db upgrade`"
        )
    return current
