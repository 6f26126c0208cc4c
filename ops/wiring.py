"""Opening the ledger (MySQL) and the live state (Redis) the same way in every command."""

from __future__ import annotations

import logging

from ops.settings import Settings


def open_ledger(settings: Settings):
    """(SQLAlchemy engine, session factory) of a reachable database migrated to head."""
    from schema.db import check_database, make_engine, session_factory
    from schema.migrate import require_head

    engine = make_engine(settings.database_url)
    check_database(engine)
    require_head(engine)
    return engine, session_factory(engine)


def open_credit(settings: Settings, wait_log: logging.Logger | None = None):
    """The credit engine on the configured Redis. With `wait_log`, a long-running process
    waits for Redis to come up instead of failing."""
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server

    client = redis_server.connect(settings.redis_url)
    if wait_log is None:
        redis_server.check(client)
    else:
        redis_server.wait_until_up(client, wait_log)
    return CreditEngine(client, Keys(settings.key_prefix))
