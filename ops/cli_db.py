"""`asterbill db ...` and `asterbill create-admin`."""

from __future__ import annotations

import sys

import click

from ops.cli import settings_of
from ops.errors import InvalidInput


def _engine(ctx: click.Context):
    from schema.db import make_engine

    return make_engine(settings_of(ctx).database_url)


@click.group()
def db() -> None:
    """Create and migrate the database (DATABASE_URL)."""


@db.command("create")
@click.pass_context
def db_create(ctx: click.Context) -> None:
    """Create the MySQL/MariaDB database named in DATABASE_URL (utf8mb4) if missing."""
    from schema.db import create_database

    created = create_database(settings_of(ctx).database_url)
    click.echo("database created" if created else "database already exists")


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    from schema import migrate
    from schema.db import check_database, describe_url

    engine = _engine(ctx)
    check_database(engine)
    migrate.upgrade(engine, revision)
    click.echo(f"{describe_url(engine)} is at schema {migrate.current_revision(engine)}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Migrate the schema down to REVISION ("base" drops every table)."""
    from schema import migrate
    from schema.db import check_database

    engine = _engine(ctx)
    check_database(engine)
    migrate.downgrade(engine, revision)
    click.echo(f"schema is at {migrate.current_revision(engine) or 'base'}")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Print the schema revision of the database and the newest one the code knows."""
    from schema import migrate

    engine = _engine(ctx)
    click.echo(f"database: {migrate.current_revision(engine) or 'base (empty)'}")
    click.echo(f"code:     {migrate.head_revision()}")


@click.command("create-admin")
@click.argument("username")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input.",
)
@click.pass_context
def create_admin(ctx: click.Context, username: str, password_stdin: bool) -> None:
    """Create a back-office administrator (the password is stored hashed)."""
    from admin.accounts import create_account
    from schema.db import check_database, session_factory, transaction
    from schema.migrate import require_head

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise InvalidInput("no terminal to ask the password: pass --password-stdin")
    engine = _engine(ctx)
    check_database(engine)
    require_head(engine)
    with transaction(session_factory(engine)) as session:
        account = create_account(session, username, password, "admin")
    click.echo(f"admin account {account.username!r} created (id {account.id})")
