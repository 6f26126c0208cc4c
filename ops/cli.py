"""`asterbill`: the one command-line entry point. It parses arguments and calls services."""

from __future__ import annotations

import logging
import sys

import click

from ops.errors import AsterbillError
from ops.settings import Settings, load_settings


class Cli(click.Group):
    """Prints expected failures as one line (no traceback) and exits non-zero."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AsterbillError as exc:
            click.echo(f"asterbill: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def settings_of(ctx: click.Context) -> Settings:
    """Settings are loaded on first use, so `--help` works even when they are broken."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
        logging.basicConfig(
            level=root.obj.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return root.obj


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """asterbill: real-time call billing for Asterisk.

    Settings come from the environment and .env (see README.md, "Configuration").
    """


@cli.command("settings")
@click.pass_context
def show_settings(ctx: click.Context) -> None:
    """Print the settings in force (secrets masked)."""
    for name, value in settings_of(ctx).describe().items():
        click.echo(f"{name} = {value}")


@cli.command()
@click.option(
    "--ami/--no-ami",
    default=None,
    help="Check the AMI too (default: when AMI_HOST is set, i.e. a real Asterisk).",
)
@click.option(
    "--watch",
    type=float,
    default=3.0,
    show_default=True,
    help="Seconds to watch AMI events (do they carry a Timestamp?).",
)
@click.pass_context
def check(ctx: click.Context, ami: bool | None, watch: float) -> None:
    """Check that the database answers and is migrated, that Redis answers, and (AMI_HOST
    set) that Asterisk's AMI takes our login and gives billing what it needs."""
    from ops import redis_server
    from schema import migrate
    from schema.db import check_database, describe_url, make_engine

    settings = settings_of(ctx)
    engine = make_engine(settings.database_url)
    check_database(engine)
    current = migrate.require_head(engine)
    click.echo(f"database ok: {describe_url(engine)} (schema {current})")
    redis_server.check(redis_server.connect(settings.redis_url))
    click.echo(f"redis ok: {settings.redis_url}")
    if ami if ami is not None else not settings.ami_embedded:
        check_ami(settings, watch)


def check_ami(settings: Settings, watch: float) -> None:
    """Log in to the AMI; print what the user lacks for billing (warnings, exit 0)."""
    import asyncio

    from ami_listener.ami_health import AmiLoginRefused, probe
    from ops.errors import ServiceUnavailable

    where = f"{settings.ami_user}@{settings.ami_host}:{settings.ami_port}"
    try:
        result = asyncio.run(
            probe(
                settings.ami_host,
                settings.ami_port,
                settings.ami_user,
                settings.ami_secret,
                watch_s=watch,
                timeout_s=settings.ami_timeout_ms / 1000,
            )
        )
    except AmiLoginRefused as exc:
        raise ServiceUnavailable(
            f"Asterisk AMI at {where} refused the login ({exc}): check AMI_USER / AMI_SECRET "
            "against manager.conf"
        ) from None
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise ServiceUnavailable(
            f"Asterisk AMI at {where} could not be reached ({exc!r}): check AMI_HOST / AMI_PORT "
            "and manager.conf [general] enabled = yes, port, bindaddr"
        ) from None
    click.echo(f"ami ok: {where} ({result.greeting}; {result.events} events watched)")
    for warning in result.warnings:
        click.echo(f"ami warning: {warning}")


def register_commands() -> None:
    from ops.cli_cdr_sync import cdr_sync
    from ops.cli_credit import credit
    from ops.cli_db import create_admin, db
    from ops.cli_listener import listener, pbx_sim
    from ops.cli_rates import rates
    from ops.cli_reconcile import reconcile
    from ops.cli_run import embedded_redis, run, web
    from ops.cli_seed import seed_command
    from ops.cli_settle import settle, worker

    for command in (
        db,
        create_admin,
        rates,
        run,
        web,
        embedded_redis,
        listener,
        pbx_sim,
        settle,
        seed_command,
        reconcile,
        credit,
        worker,
        cdr_sync,
    ):
        cli.add_command(command)


def main() -> None:
    register_commands()
    cli(prog_name="asterbill")


if __name__ == "__main__":
    sys.exit(main())
