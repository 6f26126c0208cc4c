"""`asterbill cdr-sync`: correct flagged calls from Asterisk's own CDR store."""

from __future__ import annotations

from pathlib import Path

import click

from ops.cli import settings_of
from ops.errors import InvalidInput


@click.command("cdr-sync")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="cdr_csv's Master.csv (loguniqueid = yes).",
)
@click.option(
    "--db",
    "db_url",
    default=None,
    help="Asterisk's CDR database (cdr_mysql / cdr_adaptive_odbc), an SQLAlchemy URL "
    "(default: ASTERBILL_ASTERISK_CDR_URL).",
)
@click.option("--table", default="cdr", show_default=True, help="The CDR table's name.")
@click.option(
    "--timezone",
    "zone",
    default="UTC",
    show_default=True,
    help="The zone Asterisk wrote its CDR times in (cdr_csv usegmtime = no: its local zone).",
)
@click.option(
    "--flag",
    "flags",
    multiple=True,
    help="Correct calls with this review flag (repeatable; default: every flag that means "
    "the answer or end was not seen).",
)
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.pass_context
def cdr_sync(ctx, csv_path, db_url, table, zone, flags, dry_run) -> None:
    """Correct the calls flagged because the listener did not see their answer or end
    (ended while disconnected, while the listener was down, adopted at a resync) from
    Asterisk's own CDRs, matched by the booth channel's Uniqueid: billsec, prices (the
    rates recorded on the call) and, through the credit service, each level's credit, with
    a credit-history line. Exactly once: a second run changes nothing."""
    from ops.wiring import open_credit, open_ledger
    from rating.book import RedisRateBook
    from workers.asterisk_cdrs import read_cdr_table, read_master_csv
    from workers.cdr_sync import CORRECTABLE_FLAGS, flagged, synchronize

    settings = settings_of(ctx)
    db_url = db_url or (None if csv_path else settings.asterisk_cdr_url or None)
    if (csv_path is None) == (db_url is None):
        raise InvalidInput(
            "say where Asterisk's CDRs are: exactly one of --csv FILE, --db URL "
            "(or ASTERBILL_ASTERISK_CDR_URL)"
        )
    flags = tuple(flags) or CORRECTABLE_FLAGS
    engine, factory = open_ledger(settings)
    credit = open_credit(settings)
    with factory() as session:
        uniqueids = {c.uniqueid.partition("#")[0] for c in flagged(session, flags)}
    if csv_path is not None:
        source = read_master_csv(csv_path, zone, uniqueids)
    else:
        source = read_cdr_table(db_url, uniqueids, table, zone)
    report = synchronize(
        factory,
        credit,
        source.records,
        flags=flags,
        book=RedisRateBook(credit.client, credit.keys),
        strip_prefixes=settings.strip_prefixes,
        short_call_seconds=settings.short_call_seconds,
        dry_run=dry_run,
    )
    engine.dispose()
    for error in source.errors:
        click.echo(f"BAD ROW {error}", err=True)
    for line in report.corrected:
        click.echo(f"{'DRY RUN' if dry_run else 'CORRECTED'} {line}")
    for line in report.skipped:
        click.echo(f"SKIPPED {line}")
    for line in report.not_found:
        click.echo(f"NOT FOUND {line}")
    click.echo(
        f"{len(report.corrected)} call(s) {'to correct' if dry_run else 'corrected'}, "
        f"{len(report.skipped)} skipped, {len(report.not_found)} not found in Asterisk's "
        f"CDRs, {source.other_rows} Asterisk row(s) of other calls, "
        f"{len(source.errors)} bad row(s)"
    )
    if source.errors:
        ctx.exit(1)
