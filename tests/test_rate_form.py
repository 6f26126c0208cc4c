"""Issue 13 points 5 and 6: the back office's rate form is as strict as the importer (one
validator, same messages) and a save changes just its row in the live book, also while other
sessions save in the same scope."""

from __future__ import annotations

import html
import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from rating.book import encode_rate
from rating.store import Target, book_rows, sync_scope
from schema import CustomerRate
from tests.test_back_office import login, office, post_form  # noqa: F401 (a fixture)

GOOD = {
    "dialprefix": "0039",
    "numlen": "0",
    "destination": "Italy",
    "connectcharge": "0",
    "initblock": "0",
    "rateinitial": "0.25",
    "billingblock": "60",
}


def customer_rates(factory) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(CustomerRate))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dialprefix", "0039|5", "is not digits 0-9"),
        ("dialprefix", "abc", "is not digits 0-9"),
        ("dialprefix", "٠٠٣٩", "is not digits 0-9"),
        ("rateinitial", "100000000000", "is larger than"),
        ("rateinitial", "0.1234567", "more than 6 decimals"),
        ("rateinitial", "٣", "is not a number"),
        ("connectcharge", "100001", "is larger than 100000"),
        ("billingblock", "999999999", "out of range (1..86400)"),
        ("initblock", "999999999", "out of range (0..86400)"),
        ("numlen", "999", "out of range (0..64)"),
        ("destination", "Italy|x", "may not contain '|'"),
        ("destination", "=HYPERLINK(1)", "may not start with = + - or @"),
    ],
)
def test_the_rate_form_refuses_what_the_importer_refuses(office, field, value, message):  # noqa: F811
    app, factory, _, _ = office
    client = login(app, "resA")
    before = customer_rates(factory)
    reply = post_form(client, "/admin/customer_rates/new/", {**GOOD, field: value})
    assert reply.status_code == 200
    assert message in html.unescape(reply.get_data(as_text=True))
    assert customer_rates(factory) == before


@pytest.mark.parametrize(
    ("scope", "message"),
    [({"reseller_id": "999"}, "reseller 999 does not exist"), ("B's shop", "belongs to reseller")],
)
def test_an_admin_cannot_file_a_rate_under_a_missing_or_mismatched_scope(office, scope, message):  # noqa: F811
    app, factory, _, ids = office
    if scope == "B's shop":
        scope = {"reseller_id": str(ids["resellerA"]), "group_id": str(ids["groupB1"])}
    client = login(app, "root")
    before = customer_rates(factory)
    reply = post_form(client, "/admin/customer_rates/new/", {**GOOD, **scope})
    assert message in reply.get_data(as_text=True)
    assert customer_rates(factory) == before


def test_a_saved_rate_is_normalised_and_live_and_its_old_key_leaves_redis(office):  # noqa: F811
    app, factory, _, ids = office
    client = login(app, "resA")
    reply = post_form(client, "/admin/customer_rates/new/", {**GOOD, "dialprefix": " 0039 "})
    assert reply.status_code == 302
    with factory() as s:
        row = s.scalar(select(CustomerRate).where(CustomerRate.destination == "Italy"))
    assert (row.dialprefix, row.rateinitial, row.reseller_id) == (
        "0039",
        Decimal("0.25"),
        ids["resellerA"],
    )
    book = app.extensions["asterbill_book"]
    assert book.lookup("0039061234", ids["resellerA"], ids["groupA1"])["customer"].id == row.id

    edit = f"/admin/customer_rates/edit/?id={row.id}"
    assert post_form(client, edit, {**GOOD, "dialprefix": "0040"}).status_code == 302
    found = book.lookup("0039061234", ids["resellerA"], ids["groupA1"])["customer"]
    assert found.id != row.id  # the old key is gone: the global 00 row prices it now
    assert book.lookup("0040061234", ids["resellerA"], ids["groupA1"])["customer"].id == row.id


def test_rate_saves_in_one_scope_at_once_all_succeed_and_redis_equals_mysql(office):  # noqa: F811
    app, factory, _, ids = office
    with factory() as s, s.begin():  # a scope of some size: a rebuild of it takes a while
        s.add_all(
            CustomerRate(
                dialprefix=f"9{n:05d}",
                rateinitial=Decimal("0.1"),
                connectcharge=0,
                billingblock=60,
                reseller_id=ids["resellerA"],
                group_id=0,
            )
            for n in range(2000)
        )
    book = app.extensions["asterbill_book"]
    with factory() as s:
        sync_scope(s, book, Target("customer", ids["resellerA"], 0))
    statuses: list[int] = []

    def sessions_saving(n: int) -> None:
        client = login(app, "resA")
        for i in range(5):
            data = {**GOOD, "dialprefix": f"7{n}{i:02d}", "destination": f"d{n}{i}"}
            statuses.append(post_form(client, "/admin/customer_rates/new/", data).status_code)

    threads = [threading.Thread(target=sessions_saving, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert statuses == [302] * 15
    key = book.keys.rate_scope("customer", ids["resellerA"], 0)
    in_redis = {f.decode(): v.decode() for f, v in book.client.hgetall(key).items()}
    with factory() as s:
        in_mysql = {
            r.field: encode_rate(r.rate) for r in book_rows(s, "customer", ids["resellerA"], 0)
        }
    assert len(in_mysql) == 2000 + 1 + 15
    assert in_redis == in_mysql


def test_a_saved_rate_never_answers_500_when_redis_fails_after_the_commit(office, monkeypatch):  # noqa: F811
    import admin.rate_form

    app, factory, _, _ = office

    def redis_down(*args, **kwargs):
        raise ConnectionError("Redis went away")

    monkeypatch.setattr(admin.rate_form, "refresh_keys", redis_down)
    client = login(app, "resA")
    reply = post_form(client, "/admin/customer_rates/new/", GOOD)
    assert reply.status_code == 302
    assert "could not be updated just now" in client.get(reply.headers["Location"]).get_data(
        as_text=True
    )
    with factory() as s:
        assert s.scalar(select(CustomerRate).where(CustomerRate.destination == "Italy"))
