"""The booth page (/booths) on real MariaDB and Redis through Flask's test client: tiles from
the credit engine's live state, scoping (another shop: 404, page and stream), an operator
never sees the shop's cost, the Server-Sent Events stream read incrementally, and the
counter actions through the credit service (a double click applies once)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from admin import booth_state
from lua.credit import Payer, Pricing
from rating.price import Rate
from schema import Clid, CreditOperation
from tests import test_back_office
from tests.test_back_office import login, token

office = test_back_office.office  # the same fixture: two resellers, shops, every role

RATE_C = Rate(7, 0, 0, 600_000, 60, "Germany")  # 0.60 a minute, 60 s blocks
RATE_G = Rate(8, 0, 0, 240_000, 60, "Germany")  # the shop's cost: 0.24 a minute


def start_call(office, call_id="booth-call-1", answered_s_ago=65, number="0049301234567"):
    _app, _factory, credit, ids = office
    payer = Payer(ids["resellerA"], ids["groupA1"], ids["clidA1"])
    pricing = Pricing(RATE_C, RATE_G, Rate(9, 0, 0, 60_000, 60))
    answer_ms = int(time.time() * 1000) - answered_s_ago * 1000
    meta = json.dumps({"dst": number, "destination": "Germany"})
    credit.answer(call_id, payer, pricing, answer_ms, meta)
    return payer, answer_ms


def test_operator_lands_on_its_shop_and_sees_the_live_call(office):
    app, _factory, _credit, ids = office
    start_call(office)
    client = login(app, "opA1")
    landing = client.get("/booths/")
    assert landing.status_code == 302
    assert landing.headers["Location"].endswith(f"/booths/{ids['groupA1']}")
    page = client.get(f"/booths/{ids['groupA1']}").get_data(as_text=True)
    assert "0049301234567" in page and "Germany" in page
    assert "s-in_call" in page
    state = client.get(f"/booths/{ids['groupA1']}/state").get_json()
    tile = state["booths"][str(ids["clidA1"])]
    assert tile["state"] == "in_call"
    # 65 s or 66 s at 0.60 a minute in 60 s blocks: two blocks, exactly 1.20
    assert tile["call"]["price"] == 1_200_000
    assert tile["unbilled_calls"] == 0  # the fixture's CDR is of 2026-11-01, not today
    assert "cost" not in state["shop"]  # an operator: customer prices only
    assert "Shop cost" not in page


def test_groupadmin_sees_the_shop_cost(office):
    app, _factory, _credit, ids = office
    start_call(office)
    client = login(app, "gaA1")
    state = client.get(f"/booths/{ids['groupA1']}/state").get_json()
    assert state["shop"]["cost"] == 480_000  # two blocks at 0.24
    assert "Shop cost" in client.get(f"/booths/{ids['groupA1']}").get_data(as_text=True)


@pytest.mark.parametrize("user", ["opA1", "gaA1", "resB"])
def test_another_shop_is_404_page_stream_and_actions(office, user):
    app, _factory, _credit, ids = office
    client = login(app, user)
    other = ids["groupA2"] if user != "resB" else ids["groupA1"]
    assert client.get(f"/booths/{other}").status_code == 404
    assert client.get(f"/booths/{other}/stream").status_code == 404
    assert client.get(f"/booths/{other}/state").status_code == 404
    page = client.get("/login").get_data(as_text=True)
    reply = client.post(
        f"/booths/{other}/booth/{ids['clidA1']}/credit",
        data={"kind": "lock", "op_id": "x1", "csrf_token": token(page)},
    )
    assert reply.status_code == 404


def test_reseller_opens_its_shops_from_the_list(office):
    app, _factory, _credit, ids = office
    client = login(app, "resA")
    shops = client.get("/booths/").get_data(as_text=True)
    assert f"/booths/{ids['groupA1']}" in shops and f"/booths/{ids['groupA2']}" in shops
    assert f"/booths/{ids['groupB1']}" not in shops
    assert client.get(f"/booths/{ids['groupA2']}").status_code == 200


def test_a_hidden_booth_has_no_tile_and_tiles_follow_display_names(office):
    app, factory, _credit, ids = office
    with factory() as s, s.begin():
        s.add(Clid(clid="A1-z", pin="9990001", group_id=ids["groupA1"], display="Booth 2"))
        s.add(Clid(clid="A1-y", pin="9990002", group_id=ids["groupA1"], display="Booth 1"))
        s.add(
            Clid(clid="A1-h", pin="9990003", group_id=ids["groupA1"], display="Hidden", shown=False)
        )
    page = login(app, "opA1").get(f"/booths/{ids['groupA1']}").get_data(as_text=True)
    assert "Hidden" not in page
    assert page.index("Booth 1") < page.index("Booth 2")


def test_the_shop_header_shows_title_tagline_and_logo(office):
    app, factory, _credit, ids = office
    from schema import AccountGroup

    with factory() as s, s.begin():
        g = s.get(AccountGroup, ids["groupA1"])
        g.title, g.tagline, g.logo_path, g.logo_shown = (
            "Golden Phone",
            "Call home",
            "ab12.png",
            True,
        )
    page = login(app, "opA1").get(f"/booths/{ids['groupA1']}").get_data(as_text=True)
    assert "Golden Phone" in page and "Call home" in page and 'src="/logos/ab12.png"' in page


def test_lock_twice_with_one_op_id_applies_once_and_records_who(office):
    app, factory, _credit, ids = office
    client = login(app, "opA1")
    url = f"/booths/{ids['groupA1']}"
    page = client.get(url).get_data(as_text=True)
    data = {"kind": "lock", "op_id": "dbl-click-1", "csrf_token": token(page)}
    for _ in range(2):
        assert client.post(f"{url}/booth/{ids['clidA1']}/credit", data=data).status_code == 302
    with factory() as s:
        ops = s.scalars(select(CreditOperation).where(CreditOperation.op_id == "dbl-click-1")).all()
        assert len(ops) == 1 and ops[0].kind == "lock" and ops[0].account_id is not None
        assert s.get(Clid, ids["clidA1"]).locked
    tile = client.get(f"{url}/state").get_json()["booths"][str(ids["clidA1"])]
    assert tile["locked"] and tile["state"] == "locked"  # Redis has it at once


def test_deposit_through_the_page_reaches_redis(office):
    app, factory, _credit, ids = office
    client = login(app, "opA1")
    url = f"/booths/{ids['groupA1']}"
    page = client.get(url).get_data(as_text=True)
    data = {"kind": "set_deposit", "amount": "10.00", "op_id": "dep-1", "csrf_token": token(page)}
    client.post(f"{url}/booth/{ids['clidA1']}/credit", data=data)
    tile = client.get(f"{url}/state").get_json()["booths"][str(ids["clidA1"])]
    assert tile["deposit"] == 10_000_000
    with factory() as s:
        assert s.get(Clid, ids["clidA1"]).deposit == Decimal("10")


def test_bad_amount_is_refused_with_a_message_and_nothing_changes(office):
    app, factory, _credit, ids = office
    client = login(app, "opA1")
    url = f"/booths/{ids['groupA1']}"
    page = client.get(url).get_data(as_text=True)
    data = {"kind": "set_deposit", "amount": "-3", "op_id": "dep-bad", "csrf_token": token(page)}
    reply = client.post(f"{url}/booth/{ids['clidA1']}/credit", data=data, follow_redirects=True)
    assert "may not be negative" in reply.get_data(as_text=True)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 0


def test_operator_may_not_set_a_limit(office):
    app, _factory, _credit, ids = office
    client = login(app, "opA1")
    url = f"/booths/{ids['groupA1']}"
    page = client.get(url).get_data(as_text=True)
    data = {"kind": "set_limit", "amount": "5", "op_id": "lim-1", "csrf_token": token(page)}
    assert client.post(f"{url}/booth/{ids['clidA1']}/credit", data=data).status_code == 403


def test_changes_sends_only_what_differs_and_never_cost_to_an_operator():
    old = {
        "booths": {"1": {"state": "idle"}, "2": {"state": "idle"}},
        "shop": {"amount": 1, "cost": 1},
    }
    new = {
        "booths": {"1": {"state": "idle"}, "2": {"state": "in_call"}},
        "shop": {"amount": 1, "cost": 2},
    }
    diff = booth_state.changes(old, new)
    assert diff == {"booths": {"2": {"state": "in_call"}}, "shop": {"cost": 2}}
    assert booth_state.for_role(diff, show_cost=False) == {"booths": {"2": {"state": "in_call"}}}
    assert booth_state.changes(new, new) == {}


class Stream:
    """An SSE response read incrementally, message by message."""

    def __init__(self, response) -> None:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        self.response = response
        self.chunks = iter(response.response)
        self.buffer = ""

    def next_message(self) -> dict | None:
        """The next `data:` message (None for a keepalive comment)."""
        while "\n\n" not in self.buffer:
            chunk = next(self.chunks)
            self.buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        event, self.buffer = self.buffer.split("\n\n", 1)
        data = [line[5:].strip() for line in event.splitlines() if line.startswith("data:")]
        return json.loads("".join(data)) if data else None

    def until(self, check, limit: int = 10) -> dict:
        for _ in range(limit):
            message = self.next_message()
            if message is not None and check(message):
                return message
        raise AssertionError("the stream never sent the expected change")

    def close(self) -> None:
        self.response.close()


def test_stream_pushes_a_call_and_its_end_to_every_page_from_one_reader(office):
    app, _factory, credit, ids = office
    group, booth = ids["groupA1"], str(ids["clidA1"])
    operator = Stream(login(app, "opA1").get(f"/booths/{group}/stream", buffered=False))
    boss = Stream(login(app, "gaA1").get(f"/booths/{group}/stream", buffered=False))
    try:
        first = operator.until(lambda m: "booths" in m)
        assert first["booths"][booth]["state"] == "idle"  # a new page starts from everything
        boss.until(lambda m: "booths" in m)
        opened = time.monotonic()
        _payer, answer_ms = start_call(office, call_id="live-1", answered_s_ago=5)
        seen = operator.until(lambda m: booth in m.get("booths", {}))
        tile = seen["booths"][booth]
        assert tile["state"] == "in_call" and tile["call"]["number"] == "0049301234567"
        assert "cost" not in json.dumps(seen)  # never to an operator
        assert "cost" in boss.until(lambda m: "cost" in m.get("shop", {}))["shop"]
        # only changes: the other shop's booths and unchanged tiles are not sent again
        assert set(seen.get("booths", {})) == {booth}
        end_ms = int(time.time() * 1000)
        credit.end("live-1", ids["resellerA"], end_ms, (end_ms - answer_ms) // 1000)
        ended = operator.until(lambda m: booth in m.get("booths", {}))
        assert ended["booths"][booth]["call"] is None
        hub = app.extensions["asterbill_booth_hub"]
        reader = hub.readers[group]  # one reader for both pages of the shop
        assert len(reader.subscribers) == 2
        assert reader.reads <= time.monotonic() - opened + 3  # at most one Redis read a second
    finally:
        operator.close()
        boss.close()


def test_a_stream_is_404_without_login(office):
    app, _factory, _credit, ids = office
    reply = app.test_client().get(f"/booths/{ids['groupA1']}/stream")
    assert reply.status_code == 302 and "/login" in reply.headers["Location"]


def test_hang_up_from_the_page_without_a_listener_says_so(office):
    app, _factory, _credit, ids = office
    start_call(office, call_id="live-h")
    client = login(app, "opA1")
    url = f"/booths/{ids['groupA1']}"
    headers = {"X-CSRFToken": token(client.get(url).get_data(as_text=True))}
    booth = f"{url}/booth/{ids['clidA1']}/hangup"
    wrong = client.post(booth, data={"call_id": "not-this-one"}, headers=headers)
    assert wrong.status_code == 409
    sent = client.post(booth, data={"call_id": "live-h"}, headers=headers).get_json()
    assert sent["status"] == "sent"
    reply = client.get(f"{url}/command/{sent['command']}").get_json()
    assert reply["status"] == "no_listener" and "No listener" in reply["message"]
    assert client.get(f"/booths/{ids['groupA2']}/command/{sent['command']}").status_code == 404
    other = login(app, "gaA1")  # same shop, CSRF refused without the token
    assert other.post(booth, data={"call_id": "live-h"}).status_code == 400


def test_the_page_speaks_simplified_chinese(office):
    app, factory, _credit, ids = office
    from schema import Account

    with factory() as s, s.begin():
        s.scalar(select(Account).where(Account.username == "opA1")).language = "zh"
    start_call(office, call_id="live-zh")
    page = login(app, "opA1").get(f"/booths/{ids['groupA1']}").get_data(as_text=True)
    assert "通话中" in page and "挂断" in page and "今日未结账" in page
