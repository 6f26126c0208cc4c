"""Issue 13 points 14 to 18 through the back office on real MariaDB and Redis: usernames,
money typed with other digits, a booth moved to another reseller, callback switched by a
shop, and every credit operation in a history view."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from admin.accounts import create_account
from lua.credit import Payer
from ops.errors import InvalidInput
from schema import Account, AccountGroup, Clid
from tests.ledger import place_calls
from tests.test_back_office import PASSWORD, login, office, post_form  # noqa: F401 (a fixture)
from workers.settle import settle_all

BAD_NAMES = [
    "<b>x</b>",
    "two words",
    " leading",
    "tab\there",
    "nul\x00x",
    "rtl\u202eevil",
    "óp12",
    "",
    "x" * 61,
]


def page_text(reply) -> str:
    return html.unescape(reply.get_data(as_text=True))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_account_form_refuses_usernames_outside_the_rule(office, name):  # noqa: F811
    app, factory, _, ids = office
    reply = post_form(
        login(app, "gaA1"),
        "/admin/accounts/new/",
        {
            "username": name,
            "new_password": PASSWORD,
            "role": "operator",
            "group": ids["groupA1"],
            "language": "en",
            "active": "y",
        },
    )
    assert reply.status_code == 200
    assert "a username has 1 to 60 characters" in page_text(reply) or not 0 < len(name) <= 60
    with factory() as s:
        assert s.scalar(select(Account.id).where(Account.username == name)) is None


def test_the_account_form_refuses_an_unknown_language(office):  # noqa: F811
    app, factory, _, ids = office
    form = {
        "username": "till9",
        "new_password": PASSWORD,
        "role": "operator",
        "group": ids["groupA1"],
        "active": "y",
    }
    client = login(app, "gaA1")
    assert post_form(client, "/admin/accounts/new/", {**form, "language": "zz"}).status_code == 200
    assert post_form(client, "/admin/accounts/new/", {**form, "language": "zh"}).status_code == 302
    with factory() as s:
        assert s.scalar(select(Account.language).where(Account.username == "till9")) == "zh"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_seed_and_cli_refuse_the_same_usernames(db, name):
    with pytest.raises(InvalidInput, match="a username has 1 to 60 characters"):
        create_account(db, name, PASSWORD, "admin")


def credit_post(client, url, data):
    """The credit form as a browser sends it: its CSRF token and operation id."""
    page = client.get(url).get_data(as_text=True)
    op_id = re.search(r'name="op_id" type="hidden" value="([^"]+)"', page).group(1)
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    form = {"limit_type": "none", "amount": "", "comment": "", **data}
    return client.post(url, data={**form, "op_id": op_id, "csrf_token": csrf})


def test_the_credit_page_refuses_digits_other_than_ascii(office):  # noqa: F811
    app, _, credit, ids = office
    url = f"/admin/credit/clid/{ids['clidA1']}"
    reply = credit_post(login(app, "resA"), url, {"kind": "charge", "amount": "٣"})
    assert reply.status_code == 200
    assert "digits 0-9" in page_text(reply)  # the credit page's message for people
    assert credit.level(ids["resellerA"], "clid", ids["clidA1"]).used == 0


def test_a_groupadmin_cannot_switch_callback_on(office):  # noqa: F811
    app, factory, _, ids = office
    edit = f"/admin/groups/edit/?id={ids['groupA1']}"
    client = login(app, "gaA1")
    assert 'name="allow_callback"' not in client.get(edit).get_data(as_text=True)
    post_form(client, edit, {"name": "shop-A1", "title": "t", "allow_callback": "y"})
    with factory() as s:
        assert s.get(AccountGroup, ids["groupA1"]).allow_callback is False
    reseller = login(app, "resA")
    assert 'name="allow_callback"' in reseller.get(edit).get_data(as_text=True)


BOOTH_FORM = {"clid": "A100", "display": "Booth", "kind": "booth", "accountcode": "", "shown": "y"}


def test_a_booth_moves_to_another_reseller_with_its_live_state(office):  # noqa: F811
    app, factory, credit, ids = office
    booth = Payer(ids["resellerA"], ids["groupA1"], ids["clidA1"])
    place_calls(credit, booth, [61, 30])
    client = login(app, "root")
    edit = f"/admin/clids/edit/?id={ids['clidA1']}"
    to_b = {**BOOTH_FORM, "group": ids["groupB1"]}

    refused = post_form(client, edit, to_b)  # its calls are not settled yet
    assert refused.status_code == 200 and "not yet settled" in page_text(refused)
    with factory() as s:
        assert s.get(Clid, ids["clidA1"]).group_id == ids["groupA1"]

    settle_all(factory, credit)
    before = credit.level(ids["resellerA"], "clid", ids["clidA1"])
    assert before.used > 0 and before.unbilled > 0
    assert post_form(client, edit, to_b).status_code == 302

    after = credit.level(ids["resellerB"], "clid", ids["clidA1"])
    assert (after.used, after.unbilled, after.totals) == (
        before.used,
        before.unbilled,
        before.totals,
    )
    old = credit.client.hkeys(credit.keys.balances(ids["resellerA"]))
    assert not [f for f in old if f.decode().startswith(f"c{ids['clidA1']}.")]
    assert credit.find_payer("A100") == Payer(ids["resellerB"], ids["groupB1"], ids["clidA1"])


def test_lock_limit_and_deposit_changes_are_listed_with_who_and_when(office):  # noqa: F811
    app, _, _, ids = office
    client = login(app, "resA")
    url = f"/admin/credit/clid/{ids['clidA1']}"
    for data in (
        {"kind": "lock"},
        {"kind": "set_limit", "amount": "25"},
        {"kind": "set_deposit", "amount": "10"},
        {"kind": "unlock"},
    ):
        confirm = credit_post(client, url, data).get_data(as_text=True)
        assert "Please confirm" in confirm
        hidden = dict(
            re.findall(r'<input id="[^"]*" name="([^"]+)" type="hidden" value="([^"]*)"', confirm)
        )
        done = client.post(url, data={"limit_type": "none", **data, **hidden})
        assert done.status_code == 302

    listed = page_text(client.get("/admin/credit_operations/"))
    kinds = re.findall(r'class="col-kind">\s*(\w+)\s*<', listed)
    assert sorted(kinds) == ["lock", "set_deposit", "set_limit", "unlock"]
    assert listed.count("resA") >= 4  # who
    assert f"A100 (#{ids['clidA1']})" in listed  # which booth
    # another reseller sees none of it; an operator not the view at all
    other = page_text(login(app, "resB").get("/admin/credit_operations/"))
    assert "A100 (#" not in other and "resA" not in other
    assert login(app, "opA1").get("/admin/credit_operations/").status_code == 403


def test_the_portal_follows_the_booth_users_language(office):  # noqa: F811
    from tests.test_back_office import token

    app, factory, _, ids = office
    with factory() as s:
        pin = s.get(Clid, ids["clidA1"]).pin
    client = app.test_client()
    page = client.get("/portal/login").get_data(as_text=True)
    client.post(
        "/portal/login", data={"username": "A100", "password": pin, "csrf_token": token(page)}
    )
    english = client.get("/portal/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Calls" in english
    client.post("/portal/language", data={"language": "zh", "csrf_token": token(english)})
    chinese = client.get("/portal/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "通话记录" in chinese  # "Calls", although the browser asks for English
    assert "<th>日期</th>" in chinese and "已接通" in chinese  # headers, ANSWERED


def test_column_headers_and_value_names_follow_the_users_language(office):  # noqa: F811
    from tests.test_back_office import token

    app, _, _, ids = office
    client = login(app, "resA")
    english = client.get("/admin/cdrs/").get_data(as_text=True)
    assert "Calldate" in english and "ANSWERED" in english
    home = client.get("/admin/").get_data(as_text=True)
    client.post("/language", data={"language": "zh", "csrf_token": token(home)})
    chinese = client.get("/admin/cdrs/").get_data(as_text=True)
    assert "通话日期" in chinese and "已接通" in chinese and "Calldate" not in chinese
    form = client.get(f"/admin/clids/edit/?id={ids['clidA1']}").get_data(as_text=True)
    assert "显示名称" in form  # a form label
    assert "不限" in client.get("/admin/groups/").get_data(as_text=True)  # limit type "none"
    deck_page = client.get("/admin/rate_import/").get_data(as_text=True)
    assert "费率文件" in deck_page and "dialprefix 所在列" in deck_page  # the form labels


def test_a_multiple_typed_with_other_digits_is_refused(office):  # noqa: F811
    app, factory, _, ids = office
    edit = f"/admin/groups/edit/?id={ids['groupA1']}"
    form = {"name": "shop-A1", "title": "t", "customer_multiple": "٣", "group_multiple": "1"}
    reply = post_form(login(app, "resA"), edit, form)
    assert reply.status_code == 200 and "digits 0-9" in reply.get_data(as_text=True)
    with factory() as s:
        assert s.get(AccountGroup, ids["groupA1"]).customer_multiple == 1
