"""`asterbill rates ...`: price and select (the engines seen from outside), import, export,
delete, sync and quote."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import click

from ops.cli import settings_of

ENGINES = click.Choice(["python", "lua"])


@click.group()
def rates() -> None:
    """Rate decks: price calls, select rates, import, export, delete, sync to Redis, quote."""


def _redis(ctx: click.Context):
    from ops import redis_server

    client = redis_server.connect(settings_of(ctx).redis_url)
    redis_server.check(client)
    return client


@rates.command("price")
@click.option("--engine", type=ENGINES, default="python", show_default=True)
@click.pass_context
def price_command(ctx: click.Context, engine: str) -> None:
    """Price calls: CSV on stdin (columns of shared/rating/price-vectors.csv, `price`
    optional), the same rows on stdout with `price` computed (6 decimals)."""
    from rating import csvfiles, engines
    from rating.money import format_micros

    header, rows = csvfiles.read_rows(sys.stdin, csvfiles.PRICE_COLUMNS, csvfiles.parse_price_query)
    queries = [q for _, q in rows]
    if engine == "lua":
        prices = engines.price_lua(_redis(ctx), queries)
    else:
        prices = engines.price_python(queries)
    if "price" not in header:
        header.append("price")
    out = ({**raw, "price": format_micros(p)} for (raw, _), p in zip(rows, prices, strict=True))
    csvfiles.write_rows(sys.stdout, header, out)


@rates.command("select")
@click.option(
    "--book",
    "book_path",
    required=True,
    type=click.File("r"),
    help="Rate book CSV (format of shared/rating/selection-book.csv).",
)
@click.option("--engine", type=ENGINES, default="python", show_default=True)
@click.pass_context
def select_command(ctx: click.Context, book_path, engine: str) -> None:
    """Select rates: queries CSV on stdin (number, resellerid, groupid), each written back
    with customer_rate_id, callshop_rate_id, reseller_rate_id (empty when none)."""
    from rating import csvfiles, engines

    _, book = csvfiles.read_rows(book_path, csvfiles.BOOK_COLUMNS, csvfiles.parse_book_row)
    header, rows = csvfiles.read_rows(sys.stdin, csvfiles.QUERY_COLUMNS, csvfiles.parse_query)
    book_rows = [b for _, b in book]
    queries = [q for _, q in rows]
    if engine == "lua":
        scratch = f"{settings_of(ctx).key_prefix}:scratch{secrets.token_hex(4)}"
        chosen = engines.select_lua(_redis(ctx), scratch, book_rows, queries)
    else:
        chosen = engines.select_python(book_rows, queries)
    columns = [f"{t}_rate_id" for t in ("customer", "callshop", "reseller")]
    header += [c for c in columns if c not in header]

    def merged(raw: dict, found: dict) -> dict:
        ids = {f"{t}_rate_id": ("" if i is None else i) for t, i in found.items()}
        return {**raw, **ids}

    out = (merged(raw, found) for (raw, _), found in zip(rows, chosen, strict=True))
    csvfiles.write_rows(sys.stdout, header, out)


def _db(ctx: click.Context):
    from schema.db import check_database, make_engine, session_factory
    from schema.migrate import require_head

    engine = make_engine(settings_of(ctx).database_url)
    check_database(engine)
    require_head(engine)
    return session_factory(engine)


def _book(ctx: click.Context, client=None):
    from lua.keys import Keys
    from rating.book import RedisRateBook

    return RedisRateBook(client or _redis(ctx), Keys(settings_of(ctx).key_prefix))


def _sync_scopes(ctx: click.Context, factory, targets) -> None:
    """After a committed change: rebuild the touched scopes in Redis."""
    import redis as redis_lib

    from ops.errors import ServiceUnavailable
    from rating.store import sync_scope

    try:
        book = _book(ctx)
        with factory() as session:
            for target in targets:
                sync_scope(session, book, target)
    except (ServiceUnavailable, redis_lib.RedisError) as exc:
        raise ServiceUnavailable(
            f"MySQL was changed but Redis was not synced ({exc}); "
            "run `asterbill rates sync` when Redis is back"
        ) from None


TABLE = click.Choice(["customer", "callshop", "reseller"])


@rates.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--table", type=TABLE, required=True, help="Target rate table.")
@click.option(
    "--reseller",
    "reseller_id",
    type=int,
    default=0,
    show_default=True,
    help="Scope: reseller id (0 = all resellers).",
)
@click.option(
    "--group",
    "group_id",
    type=int,
    default=0,
    show_default=True,
    help="Scope: group id (0 = all groups of the reseller).",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Which file column holds a field: a header name or a 1-based number. "
    "Unmapped fields are read from a header column of the same name.",
)
@click.option("--no-header", is_flag=True, help="The first row is data, not column names.")
@click.option("--delimiter", default=",", show_default=True, help="CSV delimiter.")
@click.option("--replace", is_flag=True, help="Update rows whose prefix and length exist.")
@click.option("--dry-run", is_flag=True, help="Check every row, write nothing.")
@click.pass_context
def import_command(
    ctx, file: Path, table, reseller_id, group_id, mapping, no_header, delimiter, replace, dry_run
) -> None:
    """Import a rate file (CSV, XLS, XLSX) into one table and scope, all or nothing."""
    from ops.errors import InvalidInput
    from rating import ratefiles
    from rating.store import Target, import_rates

    pairs = {}
    for item in mapping:
        field, sep, column = item.partition("=")
        if not sep or not column:
            raise InvalidInput(f"--map {item!r}: expected FIELD=COLUMN, e.g. dialprefix=1")
        pairs[field.strip()] = column.strip()
    rows = ratefiles.mapped_rows(
        ratefiles.read_cells(file, delimiter), ratefiles.parse_mapping(pairs), header=not no_header
    )
    target = Target(table, reseller_id, group_id)
    factory = _db(ctx)
    with factory() as session, session.begin():
        report = import_rates(session, target, rows, replace=replace)
        if dry_run:
            session.rollback()
            click.echo(
                f"dry run: {report.inserted} new and {report.updated} changed rate(s) "
                "would be imported; nothing written"
            )
            return
    _sync_scopes(ctx, factory, [target])
    click.echo(
        f"imported {report.inserted} new and {report.updated} changed {table} rate(s) "
        f"for reseller {reseller_id}, group {group_id}; Redis synced"
    )


@rates.command("export")
@click.option("--table", type=TABLE, help="Only this table (default: all three).")
@click.option("--reseller", "reseller_id", type=int, help="Only this reseller scope.")
@click.option("--group", "group_id", type=int, help="Only this group scope.")
@click.option("--output", type=click.File("w"), default="-", help="File (default stdout).")
@click.pass_context
def export_command(ctx, table, reseller_id, group_id, output) -> None:
    """Export rates as CSV in the rate-book format (readable by `rates select --book`)."""
    from rating import csvfiles
    from rating.store import book_rows

    with _db(ctx)() as session:
        rows = map(csvfiles.book_row_cells, book_rows(session, table, reseller_id, group_id))
        csvfiles.write_rows(output, list(csvfiles.BOOK_HEADER), rows)


@rates.command("delete")
@click.option("--table", type=TABLE, required=True)
@click.option("--reseller", "reseller_id", type=int, help="Only rows of this reseller scope.")
@click.option("--group", "group_id", type=int, help="Only rows of this group scope.")
@click.option("--prefix", help="Only rows whose dialprefix starts with this.")
@click.option("--all", "confirm_all", is_flag=True, help="Confirm deleting the whole table.")
@click.pass_context
def delete_command(ctx, table, reseller_id, group_id, prefix, confirm_all) -> None:
    """Delete the rates matching every filter given (no filter: needs --all)."""
    from rating.store import delete_matching

    factory = _db(ctx)
    with factory() as session, session.begin():
        count, touched = delete_matching(session, table, reseller_id, group_id, prefix, confirm_all)
    _sync_scopes(ctx, factory, sorted(touched, key=lambda t: (t.reseller_id, t.group_id)))
    click.echo(f"deleted {count} {table} rate(s); Redis synced")


@rates.command("sync")
@click.pass_context
def sync_command(ctx) -> None:
    """Rebuild every rate book in Redis from MySQL (atomically per reseller)."""
    from rating.store import sync_all

    with _db(ctx)() as session:
        count = sync_all(session, _book(ctx))
    click.echo(f"synced {count} rate(s) into Redis")


@rates.command("quote")
@click.argument("number")
@click.option("--clid", "clid_number", required=True, help="The booth / extension / card.")
@click.pass_context
def quote_command(ctx, number: str, clid_number: str) -> None:
    """The rate each level pays for NUMBER from this clid, and the price of 1, 60, 300 s."""
    from sqlalchemy import select

    from ops.errors import InvalidInput
    from rating.quote import quote
    from schema import Clid

    settings = settings_of(ctx)
    with _db(ctx)() as session:
        clid = session.scalar(select(Clid).where(Clid.clid == clid_number))
        if clid is None:
            raise InvalidInput(f"no clid {clid_number!r}")
        result = quote(_book(ctx), clid, number, settings.strip_prefixes)
    decimals = settings.display_decimals
    click.echo(
        f"{result.number} (rated as {result.rated_number or 'empty'}) from clid "
        f"{clid.clid} of group {clid.group.name} / reseller {clid.group.reseller.name}"
    )
    for line in result.lines:
        click.echo(line.describe(decimals, settings.currency))
