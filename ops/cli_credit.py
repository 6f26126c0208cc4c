"""`asterbill credit`: charge, refund, limits, limit types, locks and deposits by hand."""

from __future__ import annotations

from decimal import Decimal

import click

from ops.cli import settings_of
from ops.errors import InvalidInput
from rating.money import MONEY_TEXT

ACTIONS = {  # command word -> (service kind, what the argument is)
    "charge": ("charge", "amount"),
    "refund": ("refund", "amount"),
    "set-limit": ("set_limit", "amount"),
    "set-limit-type": ("set_limit_type", "type"),
    "lock": ("lock", None),
    "unlock": ("unlock", None),
    "set-deposit": ("set_deposit", "amount or 'none'"),
}


@click.command()
@click.argument("action", type=click.Choice(list(ACTIONS)))
@click.argument("value", required=False)
@click.option("--clid", "clid", help="The booth / extension / card number.")
@click.option("--group", "group", help="The account group (callshop) name.")
@click.option("--reseller", "reseller", help="The reseller name.")
@click.option("--comment", default="", help="Kept in the credit history.")
@click.option(
    "--op-id", default="", help="Idempotency key: the same id applies once (default: new)."
)
@click.pass_context
def credit(ctx, action, value, clid, group, reseller, comment, op_id) -> None:
    """Change the credit of one level through the credit service (MySQL row and history,
    then Redis, once per operation id). A charge is money received: it lowers the credit
    used; a refund raises it. Example: asterbill credit charge 20 --clid 8001"""
    from sqlalchemy import select

    from lua.credit import CreditEngine
    from lua.keys import Keys
    from ops import redis_server
    from ops.wiring import open_ledger
    from schema import AccountGroup, Clid, Reseller
    from workers.credit_ops import CreditRequest, perform

    chosen = [(n, v) for n, v in (("clid", clid), ("group", group), ("reseller", reseller)) if v]
    if len(chosen) != 1:
        raise InvalidInput("say which level: exactly one of --clid, --group, --reseller")
    level, name = chosen[0]
    kind, argument = ACTIONS[action]
    if argument and value is None:
        raise InvalidInput(f"{action} needs the {argument}")
    if not argument and value is not None:
        raise InvalidInput(f"{action} takes no value")
    settings = settings_of(ctx)
    engine, factory = open_ledger(settings)
    model, column = {
        "clid": (Clid, Clid.clid),
        "group": (AccountGroup, AccountGroup.name),
        "reseller": (Reseller, Reseller.name),
    }[level]
    with factory() as session:
        target = session.scalar(select(model.id).where(column == name))
    if target is None:
        raise InvalidInput(f"no {level} {name!r}")
    amount = None
    if argument and argument.startswith("amount") and value.lower() != "none":
        if not MONEY_TEXT.fullmatch(value.strip()):  # ASCII digits only, like every amount
            raise InvalidInput(f"{value!r} is not an amount (digits 0-9 and a decimal point)")
        amount = Decimal(value.strip())
    request = CreditRequest(
        kind,
        level,
        target,
        amount=amount,
        value=value if argument == "type" else None,
        comment=comment,
        op_id=op_id,
    )
    # No ping first: with Redis down the operation is kept in MySQL and the reconciler
    # applies it when Redis is back (README), as the back office does.
    client = redis_server.connect(settings.redis_url, socket_connect_timeout=5, socket_timeout=5)
    result = perform(factory, CreditEngine(client, Keys(settings.key_prefix)), request)
    engine.dispose()
    state = "already done, nothing changed" if result.replayed else "done"
    redis_state = (
        ""
        if result.applied
        else "; Redis unreachable: kept in MySQL, the reconciler applies it when Redis is back"
    )
    click.echo(
        f"{action} {level} {name}: {state} (operation {result.op_id}); credit used "
        f"{result.curcredit_before} -> {result.curcredit_after}{redis_state}"
    )
