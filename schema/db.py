"""Engines and sessions, with database failures translated into one clear line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from ops.errors import ServiceUnavailable, SettingsError

MYSQL_UNKNOWN_DATABASE = 1049
MYSQL_ACCESS_DENIED = (1044, 1045, 1698)  # denied for db, bad password, no such user


def make_engine(url: str, **kwargs) -> Engine:
    """An Engine for DATABASE_URL (MySQL/MariaDB through mysqlclient, or SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(
            f"DATABASE_URL={url!r} is not a database URL "
            "(mysql+mysqldb://user:password@host:3306/asterbill or sqlite:///path)"
        ) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
        elif backend in ("mysql", "mariadb"):
            query = dict(parsed.query)
            query.setdefault("charset", "utf8mb4")
            engine = create_engine(
                parsed.set(query=query), pool_pre_ping=True, pool_recycle=3600, **kwargs
            )
        else:
            raise SettingsError(
                f"DATABASE_URL: backend {backend!r} is not supported "
                "(use mysql+mysqldb:// or sqlite:///)"
            )
    except NoSuchModuleError as exc:
        raise SettingsError(f"DATABASE_URL: no driver for {parsed.drivername!r} ({exc})") from None
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def describe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def database_error(engine: Engine, exc: DBAPIError) -> ServiceUnavailable:
    """Turn a driver error into one line saying what failed and how to fix it."""
    where = describe_url(engine)
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    if code == MYSQL_UNKNOWN_DATABASE:
        name = engine.url.database
        return ServiceUnavailable(
            f"database {name!r} does not exist at {where}: run `asterbill db create` "
            "or create it by hand, then `asterbill db upgrade`"
        )
    if code in MYSQL_ACCESS_DENIED:
        return ServiceUnavailable(
            f"database refused the login at {where}: check the user and password in DATABASE_URL"
        )
    detail = str(orig if orig is not None else exc).splitlines()[0]
    return ServiceUnavailable(
        f"database at {where} could not be used: {detail} "
        "(check DATABASE_URL and that the server is running)"
    )


def check_database(engine: Engine) -> None:
    """Connect once; raise ServiceUnavailable with a clear line if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise database_error(engine, exc) from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


def create_database(url: str) -> bool:
    """Create the MySQL/MariaDB database named in the URL; True if it was created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        make_engine(url).dispose()
        return False
    name = parsed.database
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise SettingsError(f"DATABASE_URL: database name {name!r} must be letters, digits, _")
    server = make_engine(parsed.set(database="").render_as_string(hide_password=False))
    try:
        with server.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"),
                {"n": name},
            ).first()
            if not exists:
                # A name cannot be a bound parameter; it was checked to be [A-Za-z0-9_] above.
                conn.execute(
                    text(
                        f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    )
                )
            return not exists
    except DBAPIError as exc:
        raise database_error(server, exc) from None
    finally:
        server.dispose()
