"""Issue 13 points 7 and 16: every credit amount and every balance it leads to stays inside
what Redis, Lua and DECIMAL(18,6) keep exact; money is typed with ASCII digits only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from ops.errors import InvalidInput
from rating.money import parse_decimal
from schema import Clid
from workers.credit_bounds import MAX_AMOUNT, MAX_BALANCE
from workers.credit_ops import CreditRequest, perform


def charge(factory, credit, payer, amount: str, kind: str = "charge"):
    return perform(factory, credit, CreditRequest(kind, "clid", payer.clid_id, Decimal(amount)))


def test_an_amount_past_the_bound_is_refused_and_changes_nothing(ledger):
    factory, credit, payer = ledger
    with pytest.raises(InvalidInput, match="larger than the maximum"):
        charge(factory, credit, payer, "9000000000")
    for kind in ("set_limit", "set_deposit", "refund"):
        with pytest.raises(InvalidInput, match="larger than the maximum"):
            charge(factory, credit, payer, str(MAX_AMOUNT + 1), kind)
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == 0


def test_charges_that_would_push_the_balance_past_the_bound_are_refused(ledger):
    factory, credit, payer = ledger
    charge(factory, credit, payer, str(MAX_AMOUNT))  # used: -1e9, at the bound
    with pytest.raises(InvalidInput, match="beyond"):
        charge(factory, credit, payer, "0.000001")
    result = charge(factory, credit, payer, "5", "refund")  # back toward 0: fine

    assert result.curcredit_after == -MAX_BALANCE + 5
    with factory() as s:
        assert s.scalar(select(Clid.curcredit).where(Clid.id == payer.clid_id)) == -MAX_BALANCE + 5
    assert (
        credit.level(payer.reseller_id, "clid", payer.clid_id).used == (-1_000_000_000 + 5) * 10**6
    )


@pytest.mark.parametrize("text", ["٣", "３", "1e3", "0x10", "1_000", "Infinity", "²"])
def test_money_is_ascii_digits_only(text):
    with pytest.raises(InvalidInput, match="is not a number"):
        parse_decimal(text, 6, "amount")


def test_plain_amounts_still_read():
    assert parse_decimal(" 12.50 ", 6, "amount") == Decimal("12.5")
    assert parse_decimal(".5", 6, "amount") == Decimal("0.5")
