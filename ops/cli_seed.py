"""`asterbill seed FILE`: create or update a tenant tree, then push it into Redis."""

from __future__ import annotations

from pathlib import Path

import click

from ops.cli import settings_of


def seed_file(settings, path: Path, redis_too: bool = True) -> tuple[dict, int]:
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server
    from rating.book import RedisRateBook
    from schema.db import check_database, make_engine, session_factory
    from schema.migrate import require_head
    from workers.provision import load_seed, provision_redis, seed

    data = load_seed(path)
    engine = make_engine(settings.database_url)
    check_database(engine)
    require_head(engine)
    factory = session_factory(engine)
    with factory() as session, session.begin():
        counts = seed(session, data, path.parent)
    clids = 0
    if redis_too:
        client = redis_server.connect(settings.redis_url)
        redis_server.check(client)
        keys = Keys(settings.key_prefix)
        with factory() as session:
            clids = provision_redis(
                session, CreditEngine(client, keys), RedisRateBook(client, keys)
            )
    engine.dispose()
    return counts, clids


@click.command("seed")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--no-redis", is_flag=True, help="Write MySQL only (push to Redis later).")
@click.pass_context
def seed_command(ctx: click.Context, file: Path, no_redis: bool) -> None:
    """Create or update resellers, groups, clids and rates from a YAML or JSON file
    (idempotent), then push levels, payers and rate books into Redis."""
    counts, clids = seed_file(settings_of(ctx), file, redis_too=not no_redis)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    click.echo(f"seeded {summary}" + ("" if no_redis else f"; {clids} clid(s) in Redis"))
