"""Logins and sessions of the back office and the booth portal (issue 13, points 4, 10-12):
failed-login limits that name variants cannot dodge and one address cannot turn against
everyone, the same work for every failed login, sessions that end on the server, a new
session at login, changing one's own password, and the way back to the page asked for."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from admin.app import create_app
from ops.errors import SettingsError
from ops.settings import load_settings
from schema import Account, Clid
from tests import test_back_office
from tests.conftest import REDIS_SERVER
from tests.test_back_office import PASSWORD, login, token

office = test_back_office.office  # the same fixture: two resellers, shops, every role
LOCKED = "Too many failed logins"


def attempt(app, name, password, address="10.1.1.1", portal=False, headers=None):
    """One login from `address` in a client of its own; the reply."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    url = "/portal/login" if portal else "/login"
    page = client.get(url).get_data(as_text=True)
    data = {"username": name, "password": password, "csrf_token": token(page)}
    return client.post(url, data=data, headers=headers or {})


def pin_of(factory, number):
    with factory() as s:
        return s.scalar(select(Clid).where(Clid.clid == number)).pin


def test_name_variants_the_database_treats_as_equal_share_one_failure_count(office):
    app, *_ = office
    for n in range(5):  # from five addresses: only the name is counted here
        assert attempt(app, "opA1", "wrong", address=f"10.0.0.{n}").status_code == 200
    for variant in ("OPA1", "Opa1", "\u00f3pA1", "\uff4fpA1"):  # ó, full-width o
        reply = attempt(app, variant, PASSWORD, address="10.9.9.9")
        assert reply.status_code == 200 and LOCKED in reply.get_data(as_text=True), variant
    # and a name typed in full-width letters finds its account
    assert attempt(app, "\uff52\uff45\uff53\uff21", PASSWORD).status_code == 302  # ｒｅｓＡ


def test_booth_numbers_are_read_in_ascii_digits_before_counting_and_looking_up(office):
    app, factory, *_ = office
    pin = pin_of(factory, "A100")
    for n in range(5):
        attempt(app, "A100", "0000", address=f"10.0.0.{n}", portal=True)
    for variant in ("A\uff11\uff10\uff10", "A\u0661\u0660\u0660"):  # full-width, Arabic-Indic
        reply = attempt(app, variant, pin, address="10.9.9.9", portal=True)
        assert reply.status_code == 200 and LOCKED in reply.get_data(as_text=True), variant
    # and a number typed in other digits finds its booth
    other = attempt(app, "A\u0662\u0660\u0660", pin_of(factory, "A200"), portal=True)
    assert other.status_code == 302 and other.headers["Location"].endswith("/portal/")


def test_wrong_portal_pins_do_not_lock_out_the_staff_login_of_the_same_name(office):
    app, *_ = office
    for _ in range(6):
        attempt(app, "root", "0000", address="10.2.2.2", portal=True)
    assert attempt(app, "root", PASSWORD, address="10.2.2.2").status_code == 302


def test_one_address_gets_a_doubling_delay_instead_of_a_lock_out(office):
    app, *_ = office
    now = [1_000_000.0]
    app.extensions["asterbill_clock"] = lambda: now[0]
    for n in range(5):  # someone behind the shared address tries five names
        attempt(app, f"guess{n}", "wrong", address="10.3.3.3")
    waiting = attempt(app, "resA", PASSWORD, address="10.3.3.3")
    assert "try again in 1 s" in waiting.get_data(as_text=True)
    now[0] += 1.5
    assert attempt(app, "resA", PASSWORD, address="10.3.3.3").status_code == 302
    attempt(app, "guess9", "wrong", address="10.3.3.3")  # the sixth failure: 2 s
    now[0] += 1
    assert "try again in 1 s" in attempt(app, "resB", PASSWORD, "10.3.3.3").get_data(as_text=True)
    now[0] += 1.1
    assert attempt(app, "resB", PASSWORD, address="10.3.3.3").status_code == 302
    assert attempt(app, "gaA1", PASSWORD, address="10.4.4.4").status_code == 302  # others: free


def settings_env(fresh_mysql_url, key_prefix, tmp_path, **extra):
    return {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
        "ASTERBILL_SECRET_KEY": "test-secret-key-of-this-test",
        "ASTERBILL_DATA_DIR": str(tmp_path),
        **extra,
    }


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(
    office, fresh_mysql_url, key_prefix, tmp_path
):
    app, *_ = office
    env = settings_env(fresh_mysql_url, key_prefix, tmp_path, ASTERBILL_TRUSTED_PROXIES="1")
    proxied = create_app(load_settings(environ=env, env_file=None))
    for n in range(5):
        attempt(proxied, f"guess{n}", "x", "127.0.0.1", headers={"X-Forwarded-For": "10.5.5.1"})
    other_client = {"X-Forwarded-For": "10.5.5.2"}
    assert attempt(proxied, "resA", PASSWORD, "127.0.0.1", headers=other_client).status_code == 302
    # without the setting the header is not believed: the proxy's own address is counted
    for n in range(5):
        attempt(app, f"guess{n}", "x", "127.0.0.2", headers={"X-Forwarded-For": "10.5.5.1"})
    reply = attempt(app, "resA", PASSWORD, "127.0.0.2", headers=other_client)
    assert reply.status_code == 200


def test_every_failed_login_does_the_same_password_hash_work(office, monkeypatch):
    import admin.auth

    app, factory, *_ = office
    with factory() as s, s.begin():
        s.scalar(select(Account).where(Account.username == "resB")).active = False
    checked = []
    real = admin.auth.check_password_hash
    monkeypatch.setattr(
        admin.auth, "check_password_hash", lambda h, p: checked.append(h) or real(h, p)
    )
    for name, password in (("resB", PASSWORD), ("nobody", PASSWORD), ("resA", "wrong")):
        checked.clear()
        assert attempt(app, name, password).status_code == 200
        assert len(checked) == 1 and checked[0].startswith("scrypt:32768:8:1$"), name


def copy_of_session(app, client):
    """Another browser holding a copy of `client`'s session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", client.get_cookie("session").value)
    return thief


def test_logout_ends_the_session_on_the_server(office):
    app, factory, *_ = office
    client = login(app, "resA")
    thief = copy_of_session(app, client)
    assert thief.get("/admin/").status_code == 200
    home = client.get("/admin/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": token(home)})
    assert thief.get("/admin/").status_code == 302
    # a booth user alike
    booth = app.test_client()
    page = booth.get("/portal/login").get_data(as_text=True)
    pin = pin_of(factory, "A100")
    booth.post(
        "/portal/login", data={"username": "A100", "password": pin, "csrf_token": token(page)}
    )
    thief = copy_of_session(app, booth)
    assert thief.get("/portal/").status_code == 200
    booth.post("/logout", data={"csrf_token": token(booth.get("/portal/").get_data(as_text=True))})
    assert thief.get("/portal/").status_code == 302


def test_a_login_starts_a_new_session(office):
    app, *_ = office
    client = app.test_client()
    before = token(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": "resA", "password": PASSWORD, "csrf_token": before})
    assert client.get("/admin/").status_code == 200
    # the anonymous session's CSRF token is worth nothing now
    assert (
        client.post("/language", data={"language": "zh", "csrf_token": before}).status_code == 400
    )


def test_secure_cookies_by_setting(office, fresh_mysql_url, key_prefix, tmp_path):
    env = settings_env(fresh_mysql_url, key_prefix, tmp_path, ASTERBILL_SECURE_COOKIES="yes")
    secure = create_app(load_settings(environ=env, env_file=None))
    reply = attempt(secure, "resA", PASSWORD)
    assert reply.status_code == 302 and "Secure" in reply.headers["Set-Cookie"]
    assert "Expires" in reply.headers["Set-Cookie"]  # the 8-hour session from the first reply
    plain = attempt(office[0], "resA", PASSWORD)
    assert "Secure" not in plain.headers["Set-Cookie"]
    with pytest.raises(SettingsError, match="ASTERBILL_SECURE_COOKIES"):
        load_settings(environ={"ASTERBILL_SECURE_COOKIES": "maybe"}, env_file=None)
    with pytest.raises(SettingsError, match="ASTERBILL_TRUSTED_PROXIES"):
        load_settings(environ={"ASTERBILL_TRUSTED_PROXIES": "-1"}, env_file=None)


def change_password(client, current, new, repeat=None):
    page = client.get("/admin/password/").get_data(as_text=True)
    data = {"current": current, "new": new, "repeat": repeat or new, "csrf_token": token(page)}
    return client.post("/admin/password/", data=data)


def test_everyone_may_change_their_own_password(office):
    app, *_ = office
    client, elsewhere = login(app, "opA1"), login(app, "opA1")
    wrong = change_password(client, "not it", "a new long password")
    assert "This is not your current password." in wrong.get_data(as_text=True)
    short = change_password(client, PASSWORD, "short")
    assert "at least 10 characters" in short.get_data(as_text=True)
    differ = change_password(client, PASSWORD, "a new long password", "another one entirely")
    assert "The two new passwords differ." in differ.get_data(as_text=True)
    done = change_password(client, PASSWORD, "a new long password")
    assert done.status_code == 302
    assert client.get("/admin/").status_code == 200  # this session goes on
    assert elsewhere.get("/admin/").status_code == 302  # every other one has ended
    assert attempt(app, "opA1", PASSWORD).status_code == 200
    assert attempt(app, "opA1", "a new long password").status_code == 302
    # without its CSRF token the change is refused
    assert client.post("/admin/password/", data={"current": "x"}).status_code == 400


def test_after_login_the_user_is_back_on_the_page_asked_for(office):
    app, *_ = office
    client = app.test_client()
    asked = client.get("/admin/cdrs/?search=u-A")
    assert asked.status_code == 302
    login_url = asked.headers["Location"]
    page = client.get(login_url).get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"', page).group(1)
    data = {"username": "resA", "password": PASSWORD, "csrf_token": token(page)}
    reply = client.post(action.replace("&amp;", "&"), data=data)
    assert reply.headers["Location"] == "/admin/cdrs/?search=u-A"


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:x"]
)
def test_the_way_back_never_leaves_the_site(office, target):
    app, *_ = office
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    data = {"username": "resA", "password": PASSWORD, "csrf_token": token(page)}
    reply = client.post("/login", query_string={"next": target}, data=data)
    assert urlsplit(reply.headers["Location"]).path == "/admin/"
    assert "evil" not in reply.headers["Location"]


def test_booth_users_are_sent_to_the_portal_login(office):
    app, *_ = office
    reply = app.test_client().get("/portal/")
    assert reply.status_code == 302
    assert urlsplit(reply.headers["Location"]).path == "/portal/login"
