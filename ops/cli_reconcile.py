"""`asterbill reconcile --check`: prove that MySQL and Redis agree, to the micro-unit."""

from __future__ import annotations

import click

from ops.cli import settings_of


@click.command()
@click.option(
    "--check",
    "do_check",
    is_flag=True,
    required=True,
    help="Verify the ledger invariants; exit 1 on any drift.",
)
@click.pass_context
def reconcile(ctx: click.Context, do_check: bool) -> None:
    """Check every clid, group and reseller: MySQL balances == settled CDRs, Redis live
    balances == MySQL + running and unsettled calls. Prints every drift."""
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server
    from schema.db import check_database, make_engine, session_factory
    from schema.migrate import require_head
    from workers.reconcile import check

    settings = settings_of(ctx)
    engine = make_engine(settings.database_url)
    check_database(engine)
    require_head(engine)
    client = redis_server.connect(settings.redis_url)
    redis_server.check(client)
    with session_factory(engine)() as session:
        drifts = check(session, CreditEngine(client, Keys(settings.key_prefix)))
    for drift in drifts:
        click.echo(f"DRIFT {drift}")
    if drifts:
        ctx.exit(1)
    click.echo("no drift: MySQL and Redis agree to the micro-unit")
