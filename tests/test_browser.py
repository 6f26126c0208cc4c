"""The back office in a real browser: Playwright driving Debian's chromium (installed by
ops/scripts/system-deps) against the real web app, MariaDB and Redis. An administrator logs
in, creates a booth, charges it (with the confirmation step), imports a rate deck, and sees
the results."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from admin.accounts import create_account
from admin.app import create_app
from lua.credit import CreditEngine
from lua.keys import Keys
from ops.settings import load_settings
from schema import AccountGroup, Clid, CreditHistory, CustomerRate, Reseller, migrate
from schema.db import make_engine, session_factory
from tests.conftest import REDIS_SERVER
from tests.test_cli import free_port

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"


@pytest.fixture
def site(fresh_mysql_url, redis_server, key_prefix, tmp_path):
    engine = make_engine(fresh_mysql_url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    with factory() as s, s.begin():
        reseller = Reseller(name="north")
        s.add_all([reseller, AccountGroup(name="harbour-shop", reseller=reseller)])
        s.flush()
        create_account(s, "boss", PASSWORD, "admin")
    settings = load_settings(
        environ={
            "DATABASE_URL": fresh_mysql_url,
            "REDIS_URL": REDIS_SERVER,
            "ASTERBILL_KEY_PREFIX": key_prefix,
            "ASTERBILL_SECRET_KEY": "browser-test-secret",
            "ASTERBILL_DATA_DIR": str(tmp_path),
        },
        env_file=None,
    )
    port = free_port()
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", factory, CreditEngine(redis_server, Keys(key_prefix))
    server.shutdown()
    engine.dispose()


def test_an_admin_creates_a_booth_charges_it_and_imports_rates(site, tmp_path):
    url, factory, credit = site
    deck = tmp_path / "deck.csv"
    deck.write_text("dialprefix,destination,rateinitial,billingblock\n0086,China,0.12,6\n")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        page = browser.new_page()
        page.set_default_timeout(15_000)

        page.goto(f"{url}/admin/")
        page.fill("#username", "boss")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_contain_text("Welcome, boss")

        # a new booth
        page.goto(f"{url}/admin/clids/new/")
        page.fill("#clid", "4401")
        page.fill("#display", "Booth <4401>")
        page.select_option("#group", label="harbour-shop", force=True)  # under select2
        page.click("input[type=submit][value='Save']")
        expect(page.locator("table.model-list")).to_contain_text("Booth <4401>")  # shown as text

        # charge it, through the confirmation step
        with factory() as s:
            booth = s.scalar(select(Clid).where(Clid.clid == "4401"))
        page.goto(f"{url}/admin/credit/clid/{booth.id}")
        page.select_option("#kind", "charge")
        page.fill("#amount", "20")
        page.fill("#comment", "cash at the counter")
        page.click("button:has-text('Review')")
        expect(page.locator(".alert-warning")).to_contain_text("Please confirm")
        page.click("button:has-text('Confirm')")
        expect(page.locator(".alert-success")).to_contain_text("Credit used 0.00 -> -20.00")

        # a rate deck: preview and dry run, then import
        page.goto(f"{url}/admin/rate_import/")
        page.select_option("#table", "customer")
        page.set_input_files("#file", str(deck))
        page.click("button:has-text('Preview and dry run')")
        expect(page.locator("#dry-run")).to_contain_text("1 new and 0 updated")
        expect(page.locator("#preview")).to_contain_text("China")
        page.click("button:has-text('Import all')")
        expect(page.locator(".alert-success")).to_contain_text("1 new")
        expect(page.locator("table.model-list")).to_contain_text("China")
        browser.close()

    with factory() as s:
        [history] = s.scalars(select(CreditHistory)).all()
        assert (history.amount, history.comment) == (Decimal("20"), "cash at the counter")
        assert s.scalar(select(CustomerRate).where(CustomerRate.dialprefix == "0086"))
    payer = credit.find_payer("4401")
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == -20_000_000
