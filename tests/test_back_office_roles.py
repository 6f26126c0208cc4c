"""The back office role by role, as an attacker and as a demanding user would try it (issue
13): hidden prices, foreign names, error messages, the counter work of an operator, a
reseller's own balance, and numbers shown as people read them. Real MariaDB and Redis."""

from __future__ import annotations

import re
from decimal import Decimal

from sqlalchemy import select

from schema import Account, AccountGroup, Cdr, Clid, CustomerRate
from tests import test_back_office
from tests.test_back_office import PASSWORD, SqlSeen, listed, login, post_form, token

office = test_back_office.office  # the same fixture: two resellers, shops, every role


def test_an_operator_cannot_rank_calls_by_a_price_it_does_not_see(office):
    app, *_ = office
    operator = login(app, "opA1")
    seen = SqlSeen(app)
    try:
        for query in ("?sort=9&desc=1", "?sort=10&desc=1", "?sort=10"):
            assert operator.get(f"/admin/cdrs/{query}").status_code == 200
            assert operator.get(f"/admin/cdrs/export/csv/{query}").status_code == 200
        clauses = seen.clauses()
    finally:
        seen.close()
    assert "cdrs.callshop_credit" not in clauses and "cdrs.reseller_credit" not in clauses
    # its header links sort by the column they are on: Billing Status is not two columns off
    page = listed(operator, "cdrs")
    link = re.search(r'col-billing_status">\s*<a href="[^"]*sort=(\d+)', page).group(1)
    seen = SqlSeen(app)
    try:
        operator.get(f"/admin/cdrs/?sort={link}")
        assert "ORDER BY cdrs.billing_status" in seen.clauses()
    finally:
        seen.close()


def test_a_groupadmin_sees_neither_its_resellers_cost_nor_rate_rows_above_it(office):
    app, factory, _, ids = office
    with factory() as s, s.begin():
        s.get(AccountGroup, ids["groupA1"]).credit_reseller = Decimal("7.77")
        s.get(Clid, ids["clidA1"]).credit_reseller = Decimal("6.66")
        cdr = s.scalar(select(Cdr).where(Cdr.uniqueid == "u-A1"))
        cdr.reseller_rate_id, cdr.callshop_rate_id, cdr.customer_rate_id = 4242, 4343, 4444
    shop = login(app, "gaA1")
    for view, row_id, secret in (
        ("groups", ids["groupA1"], "7.77"),
        ("clids", ids["clidA1"], "6.66"),
        ("cdrs", cdr.id, "4242"),
    ):
        page = shop.get(f"/admin/{view}/details/?id={row_id}").get_data(as_text=True)
        assert "Credit Reseller" not in page and "Reseller Rate Id" not in page
        assert secret not in page, view
    operator = login(app, "opA1")
    page = operator.get(f"/admin/cdrs/details/?id={cdr.id}").get_data(as_text=True)
    assert "4444" in page and "4343" not in page and "4242" not in page
    assert "Callshop Rate Id" not in page


def test_taken_names_are_refused_without_saying_that_another_tenant_has_them(office):
    app, factory, _, ids = office
    reseller = login(app, "resA")
    shop = post_form(reseller, "/admin/groups/new/", {"name": "shop-B1", "title": "mine"})
    account = post_form(
        reseller,
        "/admin/accounts/new/",
        {"username": "resB", "new_password": PASSWORD, "role": "operator"}
        | {"group": ids["groupA1"], "language": "en"},
    )
    for reply in (shop, account):
        page = reply.get_data(as_text=True)
        assert reply.status_code == 200 and "Already exists" not in page
        assert "Not available: please choose another." in page
    with factory() as s:
        assert (
            s.scalar(select(AccountGroup).where(AccountGroup.name == "shop-B1")).reseller_id
            == (ids["resellerB"])
        )


def test_a_database_error_shows_a_plain_message_not_the_statement(office, caplog):
    app, factory, _, ids = office
    client = login(app, "resA")
    reply = post_form(  # the database refuses a negative multiple (a CHECK constraint)
        client,
        f"/admin/groups/edit/?id={ids['groupA1']}",
        {"name": "shop-A1", "title": "x", "customer_multiple": "-1", "group_multiple": "1"},
    )
    page = reply.get_data(as_text=True)
    assert reply.status_code == 200 and "Not saved" in page
    for leak in ("UPDATE", "account_groups", "SQL:", "parameters", "IntegrityError"):
        assert leak not in page, leak
    assert "account_groups" in caplog.text  # the detail is in the log
    with factory() as s:
        assert s.get(AccountGroup, ids["groupA1"]).customer_multiple == Decimal("1")


def test_every_role_sees_edit_and_delete_only_on_rows_it_may_change(office):
    app, factory, *_ = office
    with factory() as s:
        rates = {r.destination: r.id for r in s.scalars(select(CustomerRate))}
    page = listed(login(app, "resA"), "customer_rates")
    assert f"/admin/customer_rates/edit/?id={rates['A all']}" in page
    assert f"/admin/customer_rates/edit/?id={rates['global']}" not in page
    assert page.count('name="id"') == 2  # delete forms: its own two rows only
    page = listed(login(app, "gaA1"), "customer_rates")
    assert f"edit/?id={rates['A1 only']}" in page and f"edit/?id={rates['A all']}" not in page


def test_an_operator_takes_cash_locks_and_sets_a_deposit_on_its_shops_booths(office):
    app, factory, credit, ids = office
    operator = login(app, "opA1")
    booths = listed(operator, "clids")
    assert "A100" in booths and "A200" not in booths and "B100" not in booths
    assert "/admin/clids/edit/" not in booths and "Credit Group" not in booths
    assert f"/admin/credit/clid/{ids['clidA1']}" in booths
    url = f"/admin/credit/clid/{ids['clidA1']}"
    form = operator.get(url).get_data(as_text=True)
    assert 'value="refund"' not in form and 'value="set_limit"' not in form

    def operate(data):
        page = operator.get(url).get_data(as_text=True)
        op_id = re.search(r'name="op_id" type="hidden" value="([^"]+)"', page).group(1)
        data = {"limit_type": "none", "comment": "", "op_id": op_id, **data}
        data["csrf_token"] = token(page)
        operator.post(url, data=data)
        return operator.post(url, data={**data, "confirmed": "yes"})

    done = operate({"kind": "charge", "amount": "5"})
    assert done.status_code == 302
    shown = operator.get("/admin/clids/").get_data(as_text=True)
    assert "Credit used 0.00 -&gt; -5.00, available 5.00 USD." in shown
    assert operate({"kind": "set_deposit", "amount": "3"}).status_code == 302
    assert operate({"kind": "lock"}).status_code == 302
    refused = operate({"kind": "refund", "amount": "5"})
    assert refused.status_code == 200 and "Not a valid choice" in refused.get_data(as_text=True)
    with factory() as s:
        booth = s.get(Clid, ids["clidA1"])
        assert (booth.curcredit, booth.deposit, booth.locked) == (Decimal(-5), Decimal(3), True)
    live = credit.level(ids["resellerA"], "clid", ids["clidA1"])
    assert live.used == -5_000_000


def test_a_reseller_sees_its_own_account_and_balance_read_only(office):
    app, factory, _, ids = office
    with factory() as s, s.begin():
        own = s.scalar(select(Account).where(Account.username == "resA")).reseller
        own.creditlimit, own.curcredit = Decimal("100"), Decimal("30.5")
    client = login(app, "resA")
    page = listed(client, "resellers")
    assert "reseller-A" in page and "reseller-B" not in page
    assert "69.50" in page and "Available" in page  # next to credit used
    assert "/admin/resellers/edit/" not in page and "/admin/credit/reseller/" not in page
    details = client.get(f"/admin/resellers/details/?id={ids['resellerA']}")
    text = details.get_data(as_text=True)
    assert details.status_code == 200 and "<b>Available</b>" in text and "69.50" in text
    assert "30.500000" not in text and "0.00" in text  # totals too, to the display decimals
    assert client.get(f"/admin/resellers/details/?id={ids['resellerB']}").status_code == 404
    assert client.get(f"/admin/resellers/edit/?id={ids['resellerA']}").status_code in (302, 403)
    assert client.get(f"/admin/credit/reseller/{ids['resellerA']}").status_code == 403


def test_credit_messages_are_for_people(office):
    app, *_ = office
    ids = office[3]
    client = login(app, "resA")
    url = f"/admin/credit/clid/{ids['clidA1']}"
    page = client.get(url).get_data(as_text=True)
    assert "available 0.00 USD" in page and "0.000000" not in page
    for amount, message in (
        ("-5", "The amount may not be negative."),
        ("five", "Enter an amount such as 12.50"),
        ("1.1234567", "An amount has at most 6 decimals."),
    ):
        op_id = re.search(r'name="op_id" type="hidden" value="([^"]+)"', page).group(1)
        reply = client.post(
            url,
            data={"kind": "charge", "amount": amount, "limit_type": "none", "comment": ""}
            | {"op_id": op_id, "csrf_token": token(page)},
        ).get_data(as_text=True)
        assert message in reply and "Decimal(" not in reply, amount


def test_rates_are_shown_with_every_decimal_they_have(office):
    app, factory, _, ids = office
    with factory() as s, s.begin():
        s.add(
            CustomerRate(
                dialprefix="0039",
                connectcharge=Decimal("0.0125"),
                rateinitial=Decimal("0.085"),
                billingblock=60,
                reseller_id=ids["resellerA"],
                destination="Italy",
            )
        )
    page = listed(login(app, "resA"), "customer_rates")
    assert "0.085" in page and "0.0125" in page and "0.09<" not in page
    assert ">0.50<" in page.replace(" ", "").replace("\n", "")  # two decimals at least
