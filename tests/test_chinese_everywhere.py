"""Simplified Chinese covers every page (issue 13 point 21): each role, language zh, walks
every page it can open from the menu (lists, forms, details, credit, import, password), the
portal and both login pages, and no English word of the UI remains in the visible text; the
catalog has no untranslated or fuzzy entry and no string of the code is missing from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po
from sqlalchemy import update

from schema import Account
from tests import test_back_office
from tests.test_back_office import PASSWORD, post_form, token, upload_deck

office = test_back_office.office  # two resellers, shops, booths, every role

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "admin/translations/zh_Hans_CN/LC_MESSAGES/messages.po"

# Words that may stay as they are in Chinese pages: the product, file types, the currency
# code and the time zone's id (ASTERBILL_TIMEZONE, e.g. UTC), the column names a rate file has
# (people write them in the file's header), the name of the language switch's English choice,
# and the fixture's own data (names, usernames).
KEPT = {
    *("asterbill", "csv", "xls", "xlsx", "png", "jpeg", "gif", "kb", "pin", "usd", "english"),
    "utc",  # the time zone's id, like the currency code
    *("dialprefix", "numlen", "destination", "connectcharge", "initblock", "rateinitial"),
    *("billingblock", "default"),  # "default": the prefix people type for the fallback rate
    *("reseller", "shop", "global", "all", "only", "root", "resa", "resb", "gaa", "opa"),
}
SKIPPED_TAGS = {"script", "style", "title"}


class VisibleText(HTMLParser):
    """The text a person sees: text nodes, button values, placeholders and titles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skipping = 0
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in SKIPPED_TAGS:
            self.skipping += 1
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for name in ("placeholder", "title"):
            if attrs.get(name):
                self.parts.append(attrs[name])
        if tag == "input" and attrs.get("type") in ("submit", "button") and attrs.get("value"):
            self.parts.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag in SKIPPED_TAGS and self.skipping:
            self.skipping -= 1

    def handle_data(self, data):
        if self.skipping:
            return
        text = data.strip()
        if text == "__None":  # Flask-Admin's blank choice, which select2 shows empty
            return
        if text[:1] in ("{", "[", '"'):  # Flask-Admin's filter list: its operations and options
            try:
                self.parts.extend(shown_in_filters(json.loads(text)))
                return
            except ValueError:
                pass
        self.parts.append(data)


def shown_in_filters(data) -> list[str]:
    """What Flask-Admin's scripts show of its JSON: filter names, operations and option
    labels, action confirmations."""
    if isinstance(data, str):  # a message of a script ("select at least one row")
        return [data]
    shown = []
    for name, value in data.items() if isinstance(data, dict) else ():
        if isinstance(value, str):  # {action: its confirmation}
            shown.append(value)
            continue
        shown.append(name)  # {filter group: its operations}
        for operation in value if isinstance(value, list) else ():
            shown.append(operation["operation"])
            shown.extend(label for _value, label in operation.get("options") or ())
    return shown


def english_words(html: str) -> set[str]:
    parser = VisibleText()
    parser.feed(html)
    words = set()
    for part in parser.parts:
        for word in re.findall(r"[A-Za-z]{2,}", part):
            if word.lower() not in KEPT:
                words.add(word)
    return words


def links(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.links


def chinese_client(app, username):
    with app.app_context():
        from admin.extensions import db

        db.session.execute(
            update(Account).where(Account.username == username).values(language="zh")
        )
        db.session.commit()
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    reply = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token(page)}
    )
    assert reply.status_code == 302
    return client


def page_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)  # one page of each kind: a list, a form, a row's details
    return parts.path, ""


def walk(client) -> dict[str, str]:
    """Every back-office page reachable from the home page by links (one of each kind)."""
    pages: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    queue = ["/admin/"]
    while queue:
        url = queue.pop(0)
        key = page_key(url)
        if key in seen:
            continue
        seen.add(key)
        reply = client.get(url)
        if reply.status_code != 200 or not reply.content_type.startswith("text/html"):
            continue
        html = reply.get_data(as_text=True)
        pages[url] = html
        for href in links(html):
            path = urlsplit(href).path
            if path.startswith("/admin/") and "/export/" not in path and "/ajax/" not in path:
                queue.append(href)
    return pages


USERS = ["root", "resA", "gaA1", "opA1"]


@pytest.mark.parametrize("user", USERS)
def test_every_page_of_every_role_is_in_chinese(office, user):
    app, *_ = office
    client = chinese_client(app, user)
    pages = walk(client)
    assert len(pages) > 5, pages.keys()
    left = {url: english_words(html) for url, html in pages.items()}
    assert {url: words for url, words in left.items() if words} == {}


def test_the_portal_and_both_login_pages_are_in_chinese(office):
    app, *_ = office
    pages = {}
    for url in ("/login", "/portal/login"):
        anonymous = app.test_client()
        page = anonymous.get(url, headers={"Accept-Language": "zh-CN"}).get_data(as_text=True)
        wrong = {"username": "nobody", "password": "wrong-password", "csrf_token": token(page)}
        pages[url] = page
        pages[url + " (wrong)"] = anonymous.post(
            url, data=wrong, headers={"Accept-Language": "zh-CN"}
        ).get_data(as_text=True)
    client = app.test_client()
    page = client.get("/portal/login").get_data(as_text=True)
    client.post(
        "/portal/login",
        data={"username": "A100", "password": "6510000000000", "csrf_token": token(page)},
    )
    home = client.get("/portal/").get_data(as_text=True)
    client.post("/portal/language", data={"language": "zh", "csrf_token": token(home)})
    pages["/portal/"] = client.get("/portal/").get_data(as_text=True)
    assert "话费" in pages["/portal/"] or "通话记录" in pages["/portal/"]
    left = {url: english_words(html) for url, html in pages.items()}
    assert {url: words for url, words in left.items() if words} == {}


def test_forms_answer_bad_input_in_chinese(office):
    """Validation messages of the services (rate validator, money parser, username rule,
    password rule) come back in the user's language."""
    app, *_ = office
    client = chinese_client(app, "root")
    form = client.get("/admin/password/").get_data(as_text=True)
    reply = client.post(
        "/admin/password/",
        data={"current": PASSWORD, "new": "short", "repeat": "other", "csrf_token": token(form)},
    ).get_data(as_text=True)
    assert "两次输入的新密码不一致" in reply
    form = client.get("/admin/customer_rates/new/").get_data(as_text=True)
    reply = client.post(
        "/admin/customer_rates/new/",
        data={"dialprefix": "abc", "rateinitial": "1", "csrf_token": token(form)},
    ).get_data(as_text=True)
    assert "拨号前缀" in reply and "is not digits" not in reply
    form = client.get("/admin/accounts/new/").get_data(as_text=True)
    reply = client.post(
        "/admin/accounts/new/",
        data={
            "username": "1 2",
            "role": "admin",
            "language": "zh",
            "new_password": PASSWORD,
            "csrf_token": token(form),
        },
    ).get_data(as_text=True)
    assert "用户名为 1 到 60 个字符" in reply
    assert english_words(reply) == set()


def test_the_cli_keeps_english_messages():
    from ops.errors import InvalidInput
    from rating.money import to_micros

    with pytest.raises(InvalidInput, match=r"amount '1\.2345678' has more than 6 decimals"):
        to_micros("1.2345678")


def test_every_msgid_of_the_catalog_is_translated():
    with CATALOG.open("rb") as f:
        catalog = read_po(f)
    entries = [m for m in catalog if m.id]
    assert len(entries) > 250
    assert [m.id for m in entries if not m.string or m.fuzzy] == []
    assert not catalog.obsolete


def test_every_string_of_the_code_is_in_the_catalog(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("pybabel")),
            "extract",
            "-F",
            str(ROOT / "babel.cfg"),
            "-k",
            "_l",
            "-k",
            "tr",
            "-k",
            "lazy_gettext",
            "-k",
            "lazy_pgettext:1c,2",
            "-o",
            str(pot),
            "--omit-header",
            str(ROOT),
        ],
        check=True,
        cwd=ROOT,
    )
    with pot.open("rb") as f:
        extracted = read_po(f)
    with CATALOG.open("rb") as f:
        catalog = read_po(f)
    assert [m.id for m in extracted if m.id and m.id not in catalog] == []


def visible_without(html: str, *data: str) -> set[str]:
    """English words of a page, the data the user typed or uploaded taken out."""
    for value in data:
        html = html.replace(value, "")
    return english_words(html)


def test_the_steps_after_a_form_is_sent_are_in_chinese(office):
    """Credit review, done and refused; Flask-Admin's own flash after a save; the rate
    import's dry run and its list of bad rows."""
    app, _factory, _credit, ids = office
    client = chinese_client(app, "resA")
    url = f"/admin/credit/clid/{ids['clidA1']}"
    first = client.get(url).get_data(as_text=True)
    op_id = re.search(r'name="op_id" type="hidden" value="([^"]+)"', first).group(1)
    form = {"kind": "charge", "limit_type": "none", "comment": "", "op_id": op_id}
    form["csrf_token"] = token(first)
    refused = client.post(url, data={**form, "amount": "1.2345678"}).get_data(as_text=True)
    assert "金额最多保留 6 位小数" in refused
    review = client.post(url, data={**form, "amount": "5"}).get_data(as_text=True)
    assert "请确认" in review
    done = client.post(url, data={**form, "amount": "5", "confirmed": "yes"}, follow_redirects=True)
    pages = {"credit refused": refused, "credit review": review, "credit done": done.text}
    assert "已完成" in done.text
    created = post_form(
        client,
        "/admin/clids/new/",
        {"clid": "7001", "display": "", "kind": "booth", "group": str(ids["groupA1"])},
    )
    assert created.status_code == 302
    pages["created"] = client.get(created.headers["Location"]).get_data(as_text=True)
    assert "记录" in pages["created"]  # Flask-Admin's "Record was successfully created."
    preview = upload_deck(client, {"step": "preview"}).get_data(as_text=True)
    assert "试运行" in preview
    pages["import preview"] = preview.replace("China", "").replace("Japan", "")
    bad = "prefix,dest,per minute,block\n0086,China,-1,6\n00x1,Oops,0.2,60\n0044,UK,0.1,0\n"
    errors = upload_deck(client, {"step": "import"}, deck=bad).get_data(as_text=True)
    assert "3 行有误" in errors and "第 2 行" in errors
    pages["import errors"] = errors
    left = {
        name: visible_without(html, "China", "Japan", "Oops", "UK") for name, html in pages.items()
    }
    assert {name: words for name, words in left.items() if words} == {}
