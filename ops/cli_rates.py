"""`asterbill rates ...`: price and select (the engines seen from outside), import, export,
delete, sync and quote."""

from __future__ import annotations

import secrets
import sys

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
