"""`asterbill reconcile`: prove that MySQL and Redis agree, repair Redis, or keep watch."""

from __future__ import annotations

import logging

import click

from ops.cli import settings_of
from ops.errors import InvalidInput


@click.command()
@click.option("--check", "do_check", is_flag=True, help="Verify the ledger; exit 1 on drift.")
@click.option(
    "--repair", is_flag=True, help="Rebuild Redis balances from MySQL (a Redis that lost data)."
)
@click.option(
    "--loop",
    "every",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Run as the reconciler process: a pass every this many seconds.",
)
@click.option(
    "--provision",
    is_flag=True,
    help="With --loop: first push MySQL's configuration (levels, payers, rates) into Redis.",
)
@click.pass_context
def reconcile(
    ctx: click.Context, do_check: bool, repair: bool, every: float | None, provision: bool
) -> None:
    """Check every clid, group and reseller (MySQL balances == settled CDRs + credit
    operations; Redis live balances == MySQL + running and unsettled calls), print every
    drift; or repair Redis from MySQL; or run the periodic reconciler."""
    from ops.wiring import open_credit, open_ledger

    if sum((do_check, repair, every is not None)) != 1:
        raise InvalidInput("say one of --check, --repair, --loop SECONDS")
    settings = settings_of(ctx)
    log = logging.getLogger("asterbill.reconciler")
    _, factory = open_ledger(settings)
    credit = open_credit(settings, wait_log=log if every is not None else None)
    if every is not None:
        from workers.reconciler import run_forever

        if provision:
            from rating.book import RedisRateBook
            from workers.provision import provision_redis

            with factory() as session:
                clids = provision_redis(session, credit, RedisRateBook(credit.client, credit.keys))
            log.info("pushed %d clid(s) and the rate books into Redis", clids)
        log.info("reconciler: a pass every %.1f s", every)
        run_forever(factory, credit, every)
    elif repair:
        from rating.book import RedisRateBook
        from workers.repair import repair as rebuild

        with factory() as session:
            report = rebuild(session, credit, RedisRateBook(credit.client, credit.keys))
        click.echo(
            f"Redis rebuilt from MySQL: {report.levels} level(s) of {report.resellers} "
            f"reseller(s), {report.operations} credit operation(s) marked applied"
        )
        from workers.reconcile import check

        with factory() as session:
            left = check(session, credit)
        for finding in left:  # what a rebuild from MySQL cannot fix: a person must
            click.echo(f"CANNOT REPAIR {finding}")
        if left:
            ctx.exit(1)
    else:
        from workers.reconcile import check

        with factory() as session:
            drifts = check(session, credit)
        for drift in drifts:
            click.echo(f"{'ALERT' if _alert(drift) else 'DRIFT'} {drift}")
        if drifts:
            ctx.exit(1)
        click.echo("no drift: MySQL and Redis agree to the micro-unit")


def _alert(finding) -> bool:
    """Over a limit, a deposit exceeded, a phantom call: not a drift `--repair` fixes."""
    return getattr(finding, "repairable", True) is False
