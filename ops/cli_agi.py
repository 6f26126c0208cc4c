"""`asterbill agi`: the FastAGI server (admission, balance, calling card) for the dialplan."""

from __future__ import annotations

import asyncio
import logging

import click

from ops.cli import settings_of


@click.command()
@click.pass_context
def agi(ctx: click.Context) -> None:
    """Answer Asterisk's AGI(agi://HOST:PORT/admit|balance|card) (ASTERBILL_AGI_* settings)."""
    from ami_listener.agi.server import run_forever
    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server

    settings = settings_of(ctx)
    client = redis_server.connect(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    redis_server.wait_until_up(client, logging.getLogger("asterbill.agi"))
    asyncio.run(run_forever(CreditEngine(client, Keys(settings.key_prefix)), settings))
