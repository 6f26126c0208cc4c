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


@click.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.pass_context
def worker(ctx: click.Context, burst: bool) -> None:
    """Run an RQ worker of the settlement queue. It moves due retries itself (no RQ
    scheduler process) and outlives Redis outages: after one it starts a new worker loop."""
    import redis

    from ops.wiring import open_credit
    from workers.jobs import import_queue, settle_queue
    from workers.recovery import SettleWorker, move_due

    settings = settings_of(ctx)
    log = logging.getLogger("asterbill.worker")
    credit = open_credit(settings, wait_log=log)
    queues = [
        settle_queue(credit.client, settings.key_prefix),
        import_queue(credit.client, settings.key_prefix),
    ]
    while True:
        try:
            for queue in queues:
                move_due(queue)
            # SimpleWorker: no fork per job, so the job's database and Redis connections are
            # kept (RQ's forking worker re-opened them for every job; docs/benchmarks.md).
            rq_worker = SettleWorker(queues, connection=credit.client)
            rq_worker.work(burst=burst, logging_level=settings.log_level)
            if rq_worker._stop_requested:  # SIGTERM / SIGINT: a real stop, not an outage
                return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("worker: Redis unreachable (%s); starting again when it answers", exc)
        if burst:
            return
        # RQ's loop quits on a Redis timeout or error: wait for Redis, then a new loop
        from ops import redis_server

        time.sleep(0.5)
        redis_server.wait_until_up(credit.client, log, max_delay=1.0)
