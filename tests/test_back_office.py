"""The back office on real MariaDB and Redis, through Flask's test client with CSRF on:
who sees and changes what (ORIGINAL.md section 9), forms, escaping, credit operations."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from admin.accounts import create_account
from admin.app import create_app
from lua.credit import CreditEngine
from lua.keys import Keys
from ops.settings import load_settings
from rating.book import RedisRateBook
from schema import (
    Account,
    AccountGroup,
    Cdr,
    Clid,
    CreditHistory,
    CustomerRate,
    Reseller,
    migrate,
)
from schema.db import make_engine, session_factory
from tests.conftest import REDIS_SERVER
from workers.provision import provision_redis

PASSWORD = "correct horse battery"


@pytest.fixture
def office(fresh_mysql_url, redis_server, key_prefix, tmp_path):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    ids = {}
    with factory() as s, s.begin():
        for r in ("A", "B"):
            reseller = Reseller(name=f"reseller-{r}")
            s.add(reseller)
            for g in (1, 2):
                group = AccountGroup(name=f"shop-{r}{g}", reseller=reseller)
                clid = Clid(clid=f"{r}{g}00", pin=f"{ord(r)}{g}0000000000", group=group)
                s.add_all([group, clid])
                s.flush()
                ids[f"group{r}{g}"], ids[f"clid{r}{g}"] = group.id, clid.id
                s.add(
                    Cdr(
                        uniqueid=f"u-{r}{g}",
                        calldate=datetime(2026, 11, 1, 12),
                        clid_id=clid.id,
                        group_id=group.id,
                        reseller_id=reseller.id,
                        dst="0049301234567",
                        disposition="ANSWERED",
                        billsec=61,
                        credit=Decimal("0.8"),
                        callshop_credit=Decimal("0.3"),
                        reseller_credit=Decimal("0.1"),
                    )
                )
            ids[f"reseller{r}"] = reseller.id
        s.add_all(
            [
                CustomerRate(
                    dialprefix="00",
                    connectcharge=0,
                    rateinitial=Decimal("1"),
                    billingblock=60,
                    destination="global",
                ),
                CustomerRate(
                    dialprefix="0049",
                    connectcharge=0,
                    rateinitial=Decimal("0.5"),
                    billingblock=60,
                    reseller_id=ids["resellerA"],
                    destination="A all",
                ),
                CustomerRate(
                    dialprefix="0044",
                    connectcharge=0,
                    rateinitial=Decimal("0.4"),
                    billingblock=60,
                    reseller_id=ids["resellerA"],
                    group_id=ids["groupA1"],
                    destination="A1 only",
                ),
                CustomerRate(
                    dialprefix="0033",
                    connectcharge=0,
                    rateinitial=Decimal("0.3"),
                    billingblock=60,
                    reseller_id=ids["resellerB"],
                    destination="B all",
                ),
            ]
        )
        create_account(s, "root", PASSWORD, "admin")
        create_account(s, "resA", PASSWORD, "reseller", ids["resellerA"])
        create_account(s, "resB", PASSWORD, "reseller", ids["resellerB"])
        create_account(s, "gaA1", PASSWORD, "groupadmin", ids["resellerA"], ids["groupA1"])
        create_account(s, "opA1", PASSWORD, "operator", ids["resellerA"], ids["groupA1"])
    keys = Keys(key_prefix)
    credit = CreditEngine(redis_server, keys)
    with factory() as s:
        provision_redis(s, credit, RedisRateBook(redis_server, keys))
    settings = load_settings(
        environ={
            "DATABASE_URL": fresh_mysql_url,
            "REDIS_URL": REDIS_SERVER,
            "ASTERBILL_KEY_PREFIX": key_prefix,
            "ASTERBILL_SECRET_KEY": "test-secret-key-of-this-test",
            "ASTERBILL_DATA_DIR": str(tmp_path),  # uploads and logos
        },
        env_file=None,
    )
    app = create_app(settings)
    yield app, factory, credit, ids
    engine.dispose()


def token(html: str) -> str:
    match = re.search(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(app, username):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    reply = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token(page)}
    )
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return client


def post_form(client, url, data):
    """GET the form (for its CSRF token), then POST it."""
    page = client.get(url).get_data(as_text=True)
    return client.post(url, data={**data, "csrf_token": token(page)})


VIEWS = [
    "accounts",
    "resellers",
    "groups",
    "clids",
    "customer_rates",
    "callshop_rates",
    "reseller_rates",
    "cdrs",
    "credit_history",
]
OPENS = {
    "root": set(VIEWS),
    "resA": set(VIEWS),  # its own reseller row, read-only
    "gaA1": {
        "accounts",
        "groups",
        "clids",
        "customer_rates",
        "callshop_rates",
        "cdrs",
        "credit_history",
    },
    "opA1": {"customer_rates", "cdrs", "clids"},  # its shop's booths, for the counter
}


@pytest.mark.parametrize("user", list(OPENS))
def test_each_role_opens_only_its_views(office, user):
    app, *_ = office
    client = login(app, user)
    for view in VIEWS:
        status = client.get(f"/admin/{view}/").status_code
        assert status == (200 if view in OPENS[user] else 403), (user, view, status)


TABLES = {
    "accounts": "accounts",
    "resellers": "resellers",
    "groups": "account_groups",
    "clids": "clids",
    "customer_rates": "customer_rates",
    "callshop_rates": "callshop_rates",
    "reseller_rates": "reseller_rates",
    "cdrs": "cdrs",
    "credit_history": "credit_history",
}
# What each role must never see, sort, filter, search or export by (DESIGN.md section 2: each
# level sees the prices from its own level down; nobody sees a password hash).
SHOP_HIDES = {"reseller_credit", "reseller_rate_id", "rate_memo"}
SECRET = {"password_hash", "session_version"}
HIDDEN = {
    "root": {"accounts": SECRET, "clids": {"session_version"}},
    "resA": {"accounts": SECRET, "clids": {"session_version"}},
    "gaA1": {
        "accounts": SECRET,
        "groups": {"credit_reseller"},
        "clids": {"credit_reseller", "session_version"},
        "cdrs": SHOP_HIDES,
    },
    "opA1": {
        "clids": {"pin", "credit_group", "credit_reseller", "session_version"},
        "cdrs": SHOP_HIDES | {"callshop_credit", "callshop_rate_id"},
    },
}


def label(column: str) -> str:
    return column.replace("_", " ").title()  # Flask-Admin's column header


class SqlSeen:
    """The statements the app sends to the database (the real ones, as the server gets them)."""

    def __init__(self, app):
        from sqlalchemy import event

        from admin.extensions import db

        with app.app_context():
            self.engine = db.engine
        self.statements: list[str] = []
        self._event = event
        event.listen(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(" ".join(statement.split()))

    def clauses(self) -> str:
        """What the statements filter and order by (what they select comes before FROM)."""
        return "\n".join(s[s.find(" FROM ") :] for s in self.statements if " FROM " in s)

    def close(self):
        self._event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.mark.parametrize("user", list(HIDDEN))
def test_the_role_matrix_lists_details_sorting_filters_and_exports(office, user):
    """Every view a role opens: no hidden column in its list, details or export, and no
    request (a header link, any sort index, a filter or a search) makes the database sort or
    filter by one. The header links sort by the column they are on."""
    app, *_ = office
    client = login(app, user)
    seen = SqlSeen(app)
    try:
        for view in sorted(OPENS[user]):
            table, hidden = TABLES[view], HIDDEN[user].get(view, set())
            page = listed(client, view)
            assert "scrypt" not in page, (user, view)
            for column in hidden:
                assert f">{label(column)}<" not in page.replace("\n", "").replace(" <", "<")
            # each header link sorts by its own column
            for column, url in re.findall(
                r'<th class="column-header col-([\w-]+)">\s*<a href="([^"]+)"', page
            ):
                seen.statements.clear()
                assert client.get(url.replace("&amp;", "&")).status_code == 200
                assert f"ORDER BY {table}.{column}" in seen.clauses(), (user, view, column)
            # any sort index, a filter or a search by a hidden column: never used
            seen.statements.clear()
            probes = [f"?sort={i}&desc=1" for i in range(25)]
            probes += [f"?flt0_{c}_equals=1&flt1_{c}_greater_than=1" for c in hidden]
            probes += ["?search=0.3", "?page=0&sort=99"]
            for probe in probes:
                assert client.get(f"/admin/{view}/{probe}").status_code == 200
                if view == "cdrs":
                    export = client.get(f"/admin/{view}/export/csv/{probe}")
                    header = export.get_data(as_text=True).splitlines()[0]
                    assert not {label(c) for c in hidden} & set(header.split(",")), header
            clauses = seen.clauses()
            for column in hidden:
                assert f"{table}.{column}" not in clauses, (user, view, column)
            # the details of a row it sees
            row_id = re.search(r"/details/\?id=(\d+)", page)
            if row_id:
                details = client.get(f"/admin/{view}/details/?id={row_id.group(1)}")
                text = details.get_data(as_text=True)
                assert details.status_code == 200 and "scrypt" not in text, (user, view)
                for column in hidden:
                    assert f"<b>{label(column)}</b>" not in text, (user, view, column)
    finally:
        seen.close()


def test_nobody_logged_in_is_sent_to_the_login(office):
    app, *_ = office
    reply = app.test_client().get("/admin/clids/")
    assert reply.status_code == 302 and "/login" in reply.headers["Location"]


def listed(client, view) -> str:
    return client.get(f"/admin/{view}/").get_data(as_text=True)


def test_lists_show_only_rows_in_scope(office):
    app, *_ = office
    reseller, shop = login(app, "resA"), login(app, "gaA1")
    booths = listed(reseller, "clids")
    assert "A100" in booths and "A200" in booths and "B100" not in booths
    booths = listed(shop, "clids")
    assert "A100" in booths and "A200" not in booths
    rates = listed(reseller, "customer_rates")
    assert "global" in rates and "A all" in rates and "A1 only" in rates and "B all" not in rates
    rates = listed(shop, "customer_rates")
    assert "global" in rates and "A all" in rates and "A1 only" in rates
    assert "u-B1" not in reseller.get("/admin/cdrs/?search=u-").get_data(as_text=True)


@pytest.mark.parametrize("action", ["details", "edit", "delete"])
def test_a_foreign_row_opened_by_url_is_404_and_changes_nothing(office, action):
    app, factory, _, ids = office
    client = login(app, "resA")
    foreign = ids["clidB1"]
    if action == "delete":
        page = client.get("/admin/clids/").get_data(as_text=True)
        reply = client.post("/admin/clids/delete/", data={"id": foreign, "csrf_token": token(page)})
    else:
        reply = client.get(f"/admin/clids/{action}/?id={foreign}")
    assert reply.status_code == 404
    with factory() as s:
        assert s.get(Clid, foreign).clid == "B100"


def test_global_rates_are_read_only_below_admin(office):
    app, factory, _, _ = office
    client = login(app, "resA")
    with factory() as s:
        global_rate = s.scalar(select(CustomerRate).where(CustomerRate.reseller_id == 0))
        own = s.scalar(select(CustomerRate).where(CustomerRate.destination == "A all"))
    assert client.get(f"/admin/customer_rates/details/?id={global_rate.id}").status_code == 200
    assert client.get(f"/admin/customer_rates/edit/?id={global_rate.id}").status_code == 403
    page = client.get("/admin/customer_rates/").get_data(as_text=True)
    # a bulk delete naming the global row and its own: only its own goes
    client.post(
        "/admin/customer_rates/action/",
        data={"action": "delete", "rowid": [global_rate.id, own.id], "csrf_token": token(page)},
    )
    with factory() as s:
        assert s.get(CustomerRate, global_rate.id) is not None
        assert s.get(CustomerRate, own.id) is None


def test_who_may_create_which_account(office):
    app, factory, _, ids = office
    client = login(app, "gaA1")
    reply = post_form(
        client,
        "/admin/accounts/new/",
        {
            "username": "sneaky",
            "new_password": PASSWORD,
            "role": "admin",
            "group": ids["groupA1"],
            "language": "en",
            "active": "y",
        },
    )
    assert reply.status_code == 200  # the form again, with the error
    ok = post_form(
        client,
        "/admin/accounts/new/",
        {
            "username": "till2",
            "new_password": PASSWORD,
            "role": "operator",
            "group": ids["groupA1"],
            "language": "en",
            "active": "y",
        },
    )
    assert ok.status_code == 302
    with factory() as s:
        assert s.scalar(select(Account).where(Account.username == "sneaky")) is None
        till = s.scalar(select(Account).where(Account.username == "till2"))
        assert (till.role, till.group_id, till.reseller_id) == (
            "operator",
            ids["groupA1"],
            ids["resellerA"],
        )
        assert till.password_hash.startswith("scrypt:")


def test_a_group_from_another_reseller_cannot_be_chosen(office):
    app, factory, _, ids = office
    client = login(app, "resA")
    reply = post_form(
        client,
        "/admin/clids/new/",
        {"clid": "7777", "display": "x", "kind": "booth", "group": ids["groupB1"]},
    )
    assert reply.status_code == 200
    with factory() as s:
        assert s.scalar(select(Clid).where(Clid.clid == "7777")) is None


def test_a_new_booth_gets_a_pin_and_reaches_redis(office):
    app, factory, credit, ids = office
    client = login(app, "gaA1")
    reply = post_form(
        client,
        "/admin/clids/new/",
        {
            "clid": "5555",
            "display": "Booth 9",
            "kind": "booth",
            "group": ids["groupA1"],
            "accountcode": "",
            "shown": "y",
        },
    )
    assert reply.status_code == 302, re.findall(
        r"(?s)alert-.{0,300}|has-error.{0,300}|invalid-feedback.{0,200}",
        reply.get_data(as_text=True),
    )
    with factory() as s:
        booth = s.scalar(select(Clid).where(Clid.clid == "5555"))
    assert booth.pin.isdigit() and len(booth.pin) == 12
    payer = credit.find_payer("5555")
    assert (payer.group_id, payer.clid_id) == (ids["groupA1"], booth.id)


def test_forms_without_the_csrf_token_are_refused(office):
    app, factory, _, ids = office
    anonymous = app.test_client()
    assert (
        anonymous.post("/login", data={"username": "root", "password": PASSWORD}).status_code == 400
    )
    client = login(app, "root")
    reply = client.post(
        "/admin/clids/new/",
        data={"clid": "6666", "display": "x", "kind": "booth", "group": ids["groupA1"]},
    )
    assert reply.status_code == 400
    with factory() as s:
        assert s.scalar(select(Clid).where(Clid.clid == "6666")) is None


def test_a_display_name_with_a_script_is_shown_escaped(office):
    app, factory, _, ids = office
    with factory() as s, s.begin():
        s.get(Clid, ids["clidA1"]).display = "<script>alert(1)</script>"
    page = listed(login(app, "resA"), "clids")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_operator_sees_the_customer_price_only(office):
    app, *_ = office
    operator, reseller = login(app, "opA1"), login(app, "resA")
    page = listed(operator, "cdrs")
    assert "0.80" in page and "0.30" not in page and "Callshop Credit" not in page
    export = operator.get("/admin/cdrs/export/csv/").get_data(as_text=True)
    assert "0.80" in export and "0.30" not in export and "0.10" not in export
    page = listed(reseller, "cdrs")
    assert "0.80" in page and "0.30" in page and "0.10" in page


def test_a_charge_needs_confirming_and_applies_once(office):
    app, factory, credit, ids = office
    client = login(app, "resA")
    url = f"/admin/credit/clid/{ids['clidA1']}"
    form = {"kind": "charge", "amount": "12.50", "limit_type": "none", "comment": "cash"}
    first = client.get(url).get_data(as_text=True)
    op_id = re.search(r'name="op_id" type="hidden" value="([^"]+)"', first).group(1)
    review = client.post(url, data={**form, "op_id": op_id, "csrf_token": token(first)})
    assert "Please confirm" in review.get_data(as_text=True)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CreditHistory)) == 0  # not yet
    confirm = {**form, "op_id": op_id, "confirmed": "yes", "csrf_token": token(first)}
    assert client.post(url, data=confirm).status_code == 302
    assert client.post(url, data=confirm).status_code == 302  # a double submit
    with factory() as s:
        [history] = s.scalars(select(CreditHistory)).all()
        assert history.amount == Decimal("12.5") and history.account_id is not None
        assert s.get(Clid, ids["clidA1"]).curcredit == Decimal("-12.5")
    assert credit.level(ids["resellerA"], "clid", ids["clidA1"]).used == -12_500_000
    # another reseller's booth; an operator on another shop's booth, or on its shop: refused
    assert client.get(f"/admin/credit/clid/{ids['clidB1']}").status_code == 404
    operator = login(app, "opA1")
    assert operator.get(f"/admin/credit/clid/{ids['clidA2']}").status_code == 404
    assert operator.get(f"/admin/credit/group/{ids['groupA1']}").status_code == 403


def test_failed_logins_are_limited(office):
    app, *_ = office
    client = app.test_client()
    for _ in range(5):
        page = client.get("/login").get_data(as_text=True)
        client.post(
            "/login", data={"username": "root", "password": "nope", "csrf_token": token(page)}
        )
    page = client.get("/login").get_data(as_text=True)
    reply = client.post(
        "/login", data={"username": "root", "password": PASSWORD, "csrf_token": token(page)}
    )
    assert reply.status_code == 200 and "Too many failed logins" in reply.get_data(as_text=True)


def test_a_booth_user_sees_only_its_own_calls(office):
    app, factory, _, ids = office
    with factory() as s:
        pin = s.get(Clid, ids["clidA1"]).pin
    client = app.test_client()
    page = client.get("/portal/login").get_data(as_text=True)
    reply = client.post(
        "/portal/login", data={"username": "A100", "password": pin, "csrf_token": token(page)}
    )
    assert reply.status_code == 302
    home = client.get("/portal/").get_data(as_text=True)
    assert "A100" in home and "0.80" in home
    assert client.get("/admin/cdrs/").status_code == 403
    assert client.get("/admin/").status_code == 302  # not a back-office user


DECK = "prefix,dest,per minute,block\n0086,China,0.12,6\n0081,Japan,0.2,60\n"


def upload_deck(client, data, deck=DECK, name="deck.csv"):
    import io

    page = client.get("/admin/rate_import/").get_data(as_text=True)
    form = {
        "table": "customer",
        "reseller": "0",
        "group": "0",
        "map_dialprefix": "prefix",
        "map_destination": "dest",
        "map_rateinitial": "per minute",
        "map_billingblock": "4",
        "csrf_token": token(page),
        **data,
    }
    form["file"] = (io.BytesIO(deck.encode()), name)
    return client.post("/admin/rate_import/", data=form, content_type="multipart/form-data")


def test_a_rate_deck_is_previewed_dry_run_then_imported_and_live(office):
    app, factory, _, ids = office
    client = login(app, "resA")
    preview = upload_deck(client, {"step": "preview"})
    page = preview.get_data(as_text=True)
    assert "Dry run: 2 new and 0 updated" in page and "China" in page
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CustomerRate)) == 4  # nothing yet
    upload = re.search(r'name="upload" type="hidden" value="([^"]+)"', page).group(1)
    done = client.post(
        "/admin/rate_import/",
        data={
            "table": "customer",
            "reseller": "0",
            "group": "0",
            "map_dialprefix": "prefix",
            "map_destination": "dest",
            "map_rateinitial": "per minute",
            "map_billingblock": "4",
            "upload": upload,
            "step": "import",
            "csrf_token": token(page),
        },
    )
    assert done.status_code == 302
    with factory() as s:
        china = s.scalar(select(CustomerRate).where(CustomerRate.dialprefix == "0086"))
    assert (china.reseller_id, china.group_id, china.billingblock) == (ids["resellerA"], 0, 6)
    book = app.extensions["asterbill_book"]
    rates = book.lookup("00861012345678", ids["resellerA"], ids["groupA1"])
    assert (rates["customer"].block, rates["customer"].destination) == (6, "China")
    # the mapping is remembered for the next upload
    assert 'value="per minute"' in client.get("/admin/rate_import/").get_data(as_text=True)
    export = client.get("/admin/rate_import/export?table=customer").get_data(as_text=True)
    assert "0086" in export and "0033" not in export  # its own scope only


def test_a_bad_deck_lists_every_error_and_imports_nothing(office):
    app, factory, *_ = office
    client = login(app, "resA")
    bad = "prefix,dest,per minute,block\n0086,China,-1,6\n00x1,Oops,0.2,60\n0044,UK,0.1,0\n"
    page = upload_deck(client, {"step": "import"}, deck=bad).get_data(as_text=True)
    assert "3 bad row(s), nothing imported" in page
    assert "row 2" in page and "row 3" in page and "row 4" in page
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CustomerRate)) == 4


def test_imports_stay_inside_the_users_scope(office):
    app, factory, _, ids = office
    shop = login(app, "gaA1")
    # a groupadmin may not choose the callshop table, nor another scope
    page = upload_deck(shop, {"step": "import", "table": "callshop"}).get_data(as_text=True)
    assert "Not a valid choice" in page
    upload_deck(shop, {"step": "import", "reseller": str(ids["resellerB"])})
    with factory() as s:
        rows = s.scalars(select(CustomerRate).where(CustomerRate.dialprefix == "0086")).all()
    assert [(r.reseller_id, r.group_id) for r in rows] == [(ids["resellerA"], ids["groupA1"])]
    reseller = login(app, "resA")
    assert upload_deck(reseller, {"step": "preview", "group": str(ids["groupB1"])}).status_code in (
        200,
        403,
    )
    with factory() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(CustomerRate)
                .where(CustomerRate.group_id == ids["groupB1"])
            )
            == 0
        )
    assert login(app, "opA1").get("/admin/rate_import/").status_code == 403


def test_each_user_chooses_english_or_simplified_chinese(office):
    app, factory, *_ = office
    client = login(app, "resA")
    home = client.get("/admin/").get_data(as_text=True)
    assert "Booths" in home and "Log out" in home
    page = client.get("/admin/").get_data(as_text=True)
    client.post("/language", data={"language": "zh", "csrf_token": token(page)})
    home = client.get("/admin/").get_data(as_text=True)
    assert "话亭" in home and "退出" in home  # our own strings
    assert "列表" in client.get("/admin/clids/").get_data(as_text=True)  # Flask-Admin's
    with factory() as s:
        assert s.scalar(select(Account).where(Account.username == "resA")).language == "zh"
    assert "Booths" in login(app, "resB").get("/admin/").get_data(
        as_text=True
    )  # others keep theirs


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.mark.parametrize(
    ("name", "content", "accepted"),
    [
        ("logo.png", PNG, True),
        ("logo.png", b"<script>alert(1)</script>", False),  # not what its name says
        ("logo.svg", b"<svg onload=alert(1)>", False),
        ("logo.png", PNG + b"\x00" * 600_000, False),  # too big
    ],
)
def test_logos_are_checked_by_type_and_size(office, name, content, accepted):
    import io

    app, factory, _, ids = office
    client = login(app, "resA")
    url = f"/admin/groups/edit/?id={ids['groupA1']}"
    page = client.get(url).get_data(as_text=True)
    reply = client.post(
        url,
        data={
            "name": "shop-A1",
            "title": "Shop",
            "tagline": "",
            "accountcode": "",
            "customer_multiple": "1",
            "group_multiple": "1",
            "logo_path": (io.BytesIO(content), name),
            "csrf_token": token(page),
        },
        content_type="multipart/form-data",
    )
    with factory() as s:
        logo = s.get(AccountGroup, ids["groupA1"]).logo_path
    if accepted:
        assert reply.status_code == 302, re.findall(
            r"(?s)alert-danger.{0,400}|invalid-feedback.{0,200}|help-block.{0,200}",
            reply.get_data(as_text=True),
        )
        assert logo and logo.endswith(".png")
        served = client.get(f"/logos/{logo}")
        assert served.status_code == 200 and served.data == content
    else:
        assert reply.status_code == 200 and logo is None


def test_a_large_deck_is_imported_by_a_worker_with_progress(
    office, fresh_mysql_url, key_prefix, monkeypatch
):
    from rq import SimpleWorker

    from workers.jobs import import_queue

    app, factory, _, ids = office
    app.config["ASTERBILL_BACKGROUND_IMPORT_BYTES"] = 100  # this deck counts as large
    monkeypatch.setenv("DATABASE_URL", fresh_mysql_url)  # the worker's settings
    monkeypatch.setenv("REDIS_URL", REDIS_SERVER)
    monkeypatch.setenv("ASTERBILL_KEY_PREFIX", key_prefix)
    client = login(app, "resA")
    deck = "prefix,dest,per minute,block\n" + "".join(
        f"00{n},Place {n},0.1,60\n" for n in range(7000, 7200)
    )
    reply = upload_deck(client, {"step": "import"}, deck=deck)
    assert reply.status_code == 302 and "/admin/rate_import/job/" in reply.headers["Location"]
    waiting = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "rows read so far" in waiting and "JobStatus" not in waiting
    assert login(app, "resB").get(reply.headers["Location"]).status_code == 404  # not theirs

    redis = app.extensions["asterbill_redis"]
    SimpleWorker([import_queue(redis, app.config["ASTERBILL_KEY_PREFIX"])], connection=redis).work(
        burst=True
    )

    done = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert "Imported: 200 new, 0 updated" in done
    with factory() as s:
        assert (
            s.scalar(
                select(func.count())
                .select_from(CustomerRate)
                .where(
                    CustomerRate.reseller_id == ids["resellerA"],
                    CustomerRate.dialprefix.like("007%"),
                )
            )
            == 200
        )


def test_a_deleted_or_renumbered_booth_stops_finding_a_payer(office):
    app, factory, credit, ids = office
    client = login(app, "resA")
    url = f"/admin/clids/edit/?id={ids['clidA1']}"
    reply = post_form(
        client,
        url,
        {
            "clid": "A199",
            "display": "renumbered",
            "kind": "booth",
            "group": ids["groupA1"],
            "accountcode": "",
        },
    )
    assert reply.status_code == 302
    assert credit.find_payer("A100") is None and credit.find_payer("A199").clid_id == ids["clidA1"]
    post_form(
        client, "/admin/clids/new/", {"clid": "A178", "kind": "booth", "group": ids["groupA2"]}
    )
    assert credit.find_payer("A178") is not None
    with factory() as s:
        new = s.scalar(select(Clid).where(Clid.clid == "A178"))
    page = client.get("/admin/clids/").get_data(as_text=True)
    deleted = client.post("/admin/clids/delete/", data={"id": new.id, "csrf_token": token(page)})
    assert deleted.status_code == 302
    assert credit.find_payer("A178") is None


def foreign_rows(factory, ids):
    """For each user: (view, id) of rows another tenant owns."""
    with factory() as s:
        account = {a.username: a.id for a in s.scalars(select(Account))}
        rate_b = s.scalar(select(CustomerRate.id).where(CustomerRate.destination == "B all"))
        rate_a1 = s.scalar(select(CustomerRate.id).where(CustomerRate.destination == "A1 only"))
        cdr = {c.uniqueid: c.id for c in s.scalars(select(Cdr))}
    return {
        "resA": [
            ("accounts", account["resB"]),
            ("accounts", account["root"]),
            ("groups", ids["groupB1"]),
            ("clids", ids["clidB1"]),
            ("customer_rates", rate_b),
            ("cdrs", cdr["u-B1"]),
        ],
        "gaA1": [
            ("accounts", account["resA"]),
            ("groups", ids["groupA2"]),
            ("clids", ids["clidA2"]),
            ("cdrs", cdr["u-A2"]),
            ("customer_rates", rate_b),
        ],
        "opA1": [("cdrs", cdr["u-A2"]), ("cdrs", cdr["u-B1"]), ("customer_rates", rate_b)],
        "resB": [("customer_rates", rate_a1), ("clids", ids["clidA1"])],
    }


@pytest.mark.parametrize("user", ["resA", "gaA1", "opA1", "resB"])
def test_foreign_rows_by_url_are_not_found_for_any_view(office, user):
    app, factory, _, ids = office
    client = login(app, user)
    for view, row_id in foreign_rows(factory, ids)[user]:
        for action in ("details", "edit"):
            status = client.get(f"/admin/{view}/{action}/?id={row_id}").status_code
            # 404: out of scope; a view the role cannot edit at all sends it back to the list
            assert status in (404, 302), (user, view, action, status)
            if status == 302:
                assert action == "edit"
        assert client.get(f"/admin/{view}/details/?id={row_id}").status_code == 404


def test_a_shop_may_not_change_what_it_pays_its_reseller(office):
    app, factory, _, ids = office
    client = login(app, "gaA1")
    url = f"/admin/groups/edit/?id={ids['groupA1']}"
    form = client.get(url).get_data(as_text=True)
    assert 'name="group_multiple"' not in form and 'name="customer_multiple"' in form
    client.post(
        url,
        data={
            "name": "shop-A1",
            "title": "Best shop",
            "customer_multiple": "1.5",
            "group_multiple": "0.1",
            "csrf_token": token(form),
        },
    )
    with factory() as s:
        group = s.get(AccountGroup, ids["groupA1"])
    assert (group.title, group.customer_multiple, group.group_multiple) == (
        "Best shop",
        Decimal("1.5"),
        Decimal("1"),
    )
