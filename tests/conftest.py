"""Fixtures on real servers: each test gets its own MariaDB database and its own Redis keys.

The servers are the local ones (override with ASTERBILL_TEST_MYSQL / ASTERBILL_TEST_REDIS).
A server that cannot be reached makes the tests that need it fail, never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from ops.redis_server import connect
from schema import migrate
from schema.db import make_engine

MYSQL_SERVER = os.environ.get("ASTERBILL_TEST_MYSQL", "mysql+mysqldb://root@127.0.0.1:3306")
REDIS_SERVER = os.environ.get("ASTERBILL_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Engine]:
    engine = make_engine(f"{MYSQL_SERVER}/")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"MariaDB at {MYSQL_SERVER} is required and did not answer: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_mysql_url(mysql_server: Engine) -> Iterator[str]:
    """An empty database of its own, dropped afterwards."""
    name = f"abtest_{secrets.token_hex(6)}"
    with mysql_server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield f"{MYSQL_SERVER}/{name}"
    finally:
        with mysql_server.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture(scope="session")
def migrated_mysql(mysql_server: Engine) -> Iterator[Engine]:
    """One migrated database for the session; tests isolate through `db` (rolled back)."""
    name = f"abtest_{secrets.token_hex(6)}"
    with mysql_server.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    engine = make_engine(f"{MYSQL_SERVER}/{name}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
    with mysql_server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def db(migrated_mysql: Engine) -> Iterator[Session]:
    """A session whose every commit lands in a savepoint of a transaction rolled back after."""
    with migrated_mysql.connect() as conn:
        outer = conn.begin()
        session = Session(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            session.close()
            outer.rollback()


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    client = connect(REDIS_SERVER)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_SERVER} is required and did not answer: {exc}")
    return client


@pytest.fixture
def key_prefix(redis_server: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"abtest{secrets.token_hex(4)}"
    yield prefix
    keys = list(redis_server.scan_iter(match=f"{prefix}*", count=1000))
    keys += list(redis_server.scan_iter(match=f"rq:*{prefix}*", count=1000))  # its RQ queue
    if keys:
        redis_server.delete(*keys)


from tests.ledger import ledger  # noqa: E402,F401  (a fixture shared by settlement tests)
