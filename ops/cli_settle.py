"""`asterbill settle`: write ended calls from Redis into MySQL (CDRs and balances)."""

from __future__ import annotations

import logging
import time

import click

from ops.cli import settings_of


@click.command()
@click.option(
    "--loop",
    "every",
    type=float,
    default=None,
    help="Keep settling every this many seconds (a long-running process).",
)
@click.option(
    "--provision",
    is_flag=True,
    help="First push MySQL's configuration (levels, payers, rates) into Redis.",
)
@click.pass_context
def settle(ctx: click.Context, every: float | None, provision: bool) -> None:
    """Settle ended calls into MySQL, exactly once in effect (safe to run anywhere, twice)."""
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server
    from schema.db import check_database, make_engine, session_factory
    from schema.migrate import require_head
    from workers.settle import settle_all

    settings = settings_of(ctx)
    log = logging.getLogger("asterbill.settle")
    engine = make_engine(settings.database_url)
    check_database(engine)
    require_head(engine)
    client = redis_server.connect(settings.redis_url)
    redis_server.wait_until_up(client, log)
    credit = CreditEngine(client, Keys(settings.key_prefix))
    factory = session_factory(engine)
    if provision:
        from rating.book import RedisRateBook
        from workers.provision import provision_redis

        with factory() as session:
            clids = provision_redis(session, credit, RedisRateBook(client, credit.keys))
        log.info("pushed %d clid(s) and the rate books into Redis", clids)
    while True:
        report = settle_all(factory, credit)
        if every is None:
            click.echo(f"settled {report.written} call(s); {report.already} were already in MySQL")
            return
        time.sleep(every)
