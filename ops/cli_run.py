"""`asterbill run` (the whole system under honcho), `asterbill web`, `asterbill embedded-redis`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ops.cli import settings_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = PROJECT_ROOT / "ops" / "demo" / "seed.yaml"


@click.command()
@click.option(
    "--procfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=PROJECT_ROOT / "Procfile",
    show_default=True,
)
@click.pass_context
def run(ctx: click.Context, procfile: Path) -> None:
    """Migrate the database and start every process of the Procfile under honcho.

    With no DATABASE_URL an embedded SQLite database is used; with no REDIS_URL an embedded
    Redis (append-only file under the data directory) is started as one more process; with
    no AMI_HOST the PBX simulator plays the Asterisk.
    """
    from honcho.environ import parse_procfile
    from honcho.manager import Manager

    from schema import migrate
    from schema.db import check_database, describe_url, make_engine

    settings = settings_of(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    check_database(engine)
    migrate.upgrade(engine)
    click.echo(f"database {describe_url(engine)} migrated to {migrate.current_revision(engine)}")
    engine.dispose()
    if settings.ami_embedded and settings.database_embedded:
        # Only into the embedded database: never put a demo tenant into a real one.
        from ops.cli_seed import seed_file

        counts, _ = seed_file(settings, DEMO_SEED, redis_too=False)
        click.echo(f"demo tenant seeded from {DEMO_SEED.name}: {counts}")

    # Children see the resolved URLs, so every process talks to the same servers, and find
    # this virtualenv's `asterbill` first on PATH even when it was not activated.
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        ASTERBILL_DATA_DIR=str(settings.data_dir),
        PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    manager = Manager()
    if settings.redis_embedded:
        manager.add_process("redis", "asterbill embedded-redis", env=env)
    if settings.ami_embedded:
        # No Asterisk configured: a simulated one places booth calls for the listener, on
        # its own port (ASTERBILL_SIM_PORT), so a real Asterisk's 5038 here keeps its AMI.
        manager.add_process(
            "pbx",
            f"asterbill pbx-sim --port {settings.ami_port} --forever --calls 100000 --cps 0.5"
            " --talk 5:90",
            env=env,
        )
    for name, command in parse_procfile(procfile.read_text()).processes.items():
        manager.add_process(name, command, env=env, cwd=str(PROJECT_ROOT))
    manager.loop()
    sys.exit(manager.returncode)


@click.command("embedded-redis")
@click.pass_context
def embedded_redis(ctx: click.Context) -> None:
    """Run the embedded Redis in the foreground (used by `asterbill run` without REDIS_URL)."""
    from ops.redis_server import embedded_command

    command = embedded_command(settings_of(ctx))
    os.execv(command[0], command)  # noqa: S606 - fixed argv, no shell


@click.command()
@click.pass_context
def web(ctx: click.Context) -> None:
    """Serve the web application (health check; the back office) with waitress."""
    import waitress

    from admin.app import create_app

    settings = settings_of(ctx)
    click.echo(f"web on http://{settings.web_host}:{settings.web_port}/healthz")
    waitress.serve(  # threads: each open booth page's event stream holds one
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        threads=settings.web_threads,
    )
