"""The card IVR and the balance announcement over real TCP and a real Redis (and MariaDB for
the lockout written to the card's record)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlalchemy import select

from ami_listener.agi import prompts
from ami_listener.agi.server import build_scripts, start
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from lua.pins import PinStore
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate
from rating.select import BookRow
from tests import agi_client

DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")  # 0.4 for 60 s, then 0.4/min
CARD, PIN, NUMBER = "7001234", "1234567890", "004930123456"
STRANGER = "5550001"


def settings_for(key_prefix, **extra):
    env = {"ASTERBILL_KEY_PREFIX": key_prefix, "ASTERBILL_PIN_MAX_FAILURES": "3", **extra}
    return load_settings(env, env_file=None)


@pytest.fixture
def rig(redis_server, key_prefix):
    keys = Keys(key_prefix)
    engine = CreditEngine(redis_server, keys)
    RedisRateBook(redis_server, keys).replace([BookRow("customer", "0049", 0, 0, 0, DE)])
    engine.provision(Payer(1, 10, 100), payer_key=CARD, limits={"clid": ("prepaid", 5_000_000)})
    PinStore(redis_server, keys).set_pin(CARD, PIN)
    return engine, settings_for(key_prefix)


def sessions(rig, *calls: dict) -> list[agi_client.AgiCall]:
    """These AGI sessions one after the other (keyword arguments of agi_client.call)."""
    engine, settings = rig

    async def scenario():
        _, server = await start(build_scripts(engine, settings), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            out = []
            for c in calls:
                out.append(await agi_client.call(port, c.pop("script", "card"), **c))
            return out

    return asyncio.run(scenario())


BALANCE_5 = [prompts.BALANCE_IS, "5", prompts.CURRENCY]
# 5.00: the connect charge 0.4 pays 60 s, 4.6 pays 11 blocks of 60 s: 720 s, 12 minutes.
MAXSEC_5 = "720"


def test_the_right_pin_announces_balance_and_minutes_and_dials_with_the_limit(rig):
    (call,) = sessions(
        rig,
        {"callerid": STRANGER, "dtmf": [CARD, PIN, NUMBER], "args": ["PJSIP/{number}@trunk"]},
    )
    assert call.commands[0] == "ANSWER"
    assert call.variables["CALLERID(num)"] == CARD  # the listener bills the card
    assert call.said == [
        prompts.ENTER_CARD,
        prompts.ENTER_PIN,
        *BALANCE_5,
        prompts.ENTER_NUMBER,
        "12",
        prompts.MINUTES_LEFT,
    ]
    assert call.variables["ASTERBILL_STATUS"] == "OK"
    assert call.variables["ASTERBILL_MAXSEC"] == MAXSEC_5
    assert call.variables["ASTERBILL_NUMBER"] == NUMBER
    assert call.commands[-1] == f'EXEC Dial "PJSIP/{NUMBER}@trunk,,L({MAXSEC_5}000)"'


def test_a_caller_id_that_is_the_card_asks_no_pin(rig):
    (call,) = sessions(rig, {"callerid": CARD, "dtmf": [NUMBER]})
    assert call.said[0] == prompts.BALANCE_IS
    assert prompts.ENTER_PIN not in call.said
    assert "CALLERID(num)" not in call.variables
    assert call.variables["ASTERBILL_STATUS"] == "OK"


def test_a_wrong_pin_then_the_right_one(rig, redis_server):
    engine, _ = rig
    (call,) = sessions(rig, {"callerid": STRANGER, "dtmf": [CARD, "999999", CARD, PIN, NUMBER]})
    assert call.said[:4] == [
        prompts.ENTER_CARD,
        prompts.ENTER_PIN,
        prompts.WRONG_PIN,
        prompts.ENTER_CARD,
    ]
    assert call.variables["ASTERBILL_STATUS"] == "OK"
    assert redis_server.get(engine.keys.pin_failures("caller", STRANGER)) == b"1"
    assert redis_server.get(engine.keys.pin_failures("card", CARD)) is None  # reset by success


def test_three_wrong_pins_end_the_call_and_lock_the_card(rig, redis_server, caplog):
    engine, _ = rig
    wrong = [CARD, "111", CARD, "222", CARD, "333"]
    with caplog.at_level(logging.INFO, "asterbill.agi"):
        first, later = sessions(
            rig,
            {"callerid": STRANGER, "dtmf": wrong},
            {"callerid": "5559999", "dtmf": [CARD, PIN, NUMBER]},  # the owner, elsewhere
        )
    assert (first.variables["ASTERBILL_STATUS"], first.variables["ASTERBILL_REASON"]) == (
        "UNKNOWN",
        "WRONG_PIN",
    )
    assert f"card {CARD} locked after 3 wrong PINs" in caplog.text
    assert (later.variables["ASTERBILL_STATUS"], later.variables["ASTERBILL_REASON"]) == (
        "LOCKED",
        "PIN_LOCKED_CARD",
    )
    assert prompts.ENTER_PIN not in later.said  # no more guesses for that card
    (event,) = redis_server.lrange(engine.keys.pin_lockouts(), 0, -1)
    assert json.loads(event)["card"] == CARD


def test_wrong_pins_on_many_cards_lock_the_caller_id(rig, caplog):
    with caplog.at_level(logging.INFO, "asterbill.agi"):
        first, again, owner = sessions(
            rig,
            {"callerid": STRANGER, "dtmf": ["7000001", "1", "7000002", "2", "7000003", "3"]},
            {"callerid": STRANGER, "dtmf": [CARD, PIN, NUMBER]},
            {"callerid": "5559999", "dtmf": [CARD, PIN, NUMBER]},
        )
    assert first.variables["ASTERBILL_REASON"] == "WRONG_PIN"
    assert (again.variables["ASTERBILL_STATUS"], again.variables["ASTERBILL_REASON"]) == (
        "LOCKED",
        "PIN_LOCKED_CALLER",
    )
    assert again.said == [prompts.LOCKED]
    assert owner.variables["ASTERBILL_STATUS"] == "OK"  # the card itself is not touched
    assert f"caller '{STRANGER}' locked out after 3 wrong PINs" in caplog.text


def test_a_caller_hanging_up_mid_prompt_ends_the_session_quietly(rig, redis_server):
    engine, _ = rig
    gone, after = sessions(
        rig,
        {"callerid": STRANGER, "dtmf": [CARD], "hangup_at": "GET DATA asterbill-enter-pin"},
        {"callerid": STRANGER, "dtmf": [CARD, PIN, NUMBER]},
    )
    assert gone.commands[-1].startswith("GET DATA asterbill-enter-pin")
    assert gone.closed_by_server
    assert redis_server.get(engine.keys.pin_failures("caller", STRANGER)) is None
    assert after.variables["ASTERBILL_STATUS"] == "OK"


def test_a_card_without_credit_for_the_destination_hears_why(rig):
    engine, _ = rig
    engine.provision(Payer(1, 10, 100), payer_key=CARD, limits={"clid": ("prepaid", 100_000)})
    (call,) = sessions(rig, {"callerid": CARD, "dtmf": [NUMBER], "args": ["PJSIP/{number}"]})
    assert call.variables["ASTERBILL_STATUS"] == "NO_CREDIT"
    assert call.said[-1] == prompts.NO_CREDIT
    assert not any(c.startswith("EXEC Dial") for c in call.commands)


def test_balance_announces_units_and_cents_rounded_down(rig, redis_server):
    engine, _ = rig
    redis_server.hset(engine.keys.balances(1), "c100.used", 1_234_567)  # 5 - 1.234567
    engine.provision(Payer(1, 10, 200), payer_key="8002")  # no limit
    known, unlimited, stranger = sessions(
        rig,
        {"script": "balance", "callerid": CARD},
        {"script": "balance", "callerid": "8002"},
        {"script": "balance", "callerid": STRANGER},
    )
    # 3.765433 at 2 decimals: 3 and 76 (never 77: the caller does not have it).
    assert known.said == [
        prompts.BALANCE_IS,
        "3",
        prompts.CURRENCY,
        prompts.AND,
        "76",
        prompts.CENTS,
    ]
    assert known.variables["ASTERBILL_BALANCE"] == "3765433"
    assert unlimited.said == [prompts.UNLIMITED]
    assert stranger.variables["ASTERBILL_STATUS"] == "UNKNOWN"


def test_a_card_lockout_reaches_the_ledger_once(ledger, redis_server, key_prefix):
    from schema import Clid, CreditOperation
    from workers.pin_lockouts import record_lockouts
    from workers.provision import provision_clid
    from workers.reconciler import reconcile_once

    factory, credit, payer = ledger
    with factory() as session:
        provision_clid(credit, session.get(Clid, payer.clid_id))  # booth 8001, PIN 8001000000
    assert PinStore(redis_server, credit.keys).owner("8001000000") == "8001"
    RedisRateBook(redis_server, credit.keys).replace([BookRow("customer", "0049", 0, 0, 0, DE)])
    rig = (credit, settings_for(key_prefix))
    (guess,) = sessions(
        rig, {"callerid": STRANGER, "dtmf": ["8001", "1", "8001", "2", "8001", "3"]}
    )
    assert guess.variables["ASTERBILL_REASON"] == "WRONG_PIN"
    event = redis_server.lindex(credit.keys.pin_lockouts(), 0)

    reconcile_once(factory, credit)  # the reconciler's pass writes it
    redis_server.rpush(credit.keys.pin_lockouts(), event)  # the same event again
    assert record_lockouts(factory, credit) == 1
    with factory() as session:
        assert session.get(Clid, payer.clid_id).locked
        (op,) = session.scalars(select(CreditOperation)).all()
    assert op.kind == "lock"
    assert op.comment == f"locked by the card IVR: 3 wrong PINs, last from caller {STRANGER}"
    assert redis_server.llen(credit.keys.pin_lockouts()) == 0
    (admit,) = sessions(rig, {"script": "admit", "callerid": "8001"})
    assert admit.variables["ASTERBILL_STATUS"] == "LOCKED"


def test_with_the_accountcode_payer_field_the_card_is_set_as_account_code(rig, key_prefix):
    engine, _ = rig
    accountcode = settings_for(key_prefix, ASTERBILL_PAYER_FIELD="accountcode")
    peer = settings_for(key_prefix, ASTERBILL_PAYER_FIELD="peer")
    (by_code,) = sessions(
        (engine, accountcode), {"callerid": STRANGER, "dtmf": [CARD, PIN, NUMBER]}
    )
    (by_peer,) = sessions((engine, peer), {"callerid": STRANGER, "dtmf": [CARD, PIN, NUMBER]})
    assert by_code.variables["CHANNEL(accountcode)"] == CARD
    assert by_code.variables["ASTERBILL_STATUS"] == "OK"
    # A peer cannot be set from the dialplan: the card could not be billed, so no PIN asked.
    assert by_peer.variables["ASTERBILL_STATUS"] == "ERROR"
    assert "needs ASTERBILL_PAYER_FIELD" in by_peer.variables["ASTERBILL_REASON"]
    assert prompts.ENTER_PIN not in by_peer.said
