"""The credit service on real MariaDB and Redis: MySQL + history + Lua, once per op id."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select

from lua.credit import CreditEngine, Deny
from ops.errors import InvalidInput
from schema import AccountGroup, Clid, CreditHistory, CreditOperation, Reseller
from tests.conftest import REDIS_SERVER
from tests.ledger import place_calls
from workers import reconcile
from workers.credit_ops import CreditRequest, perform, reapply_pending
from workers.settle import settle_all


def snapshot(factory, credit, payer):
    """Everything a credit operation may touch, in MySQL and Redis."""
    with factory() as session:
        rows = [
            (r.curcredit, r.creditlimit, r.limit_type)
            for r in (
                session.get(Clid, payer.clid_id),
                session.get(AccountGroup, payer.group_id),
                session.get(Reseller, payer.reseller_id),
            )
        ]
        counts = (
            session.scalar(select(func.count()).select_from(CreditOperation)),
            session.scalar(select(func.count()).select_from(CreditHistory)),
        )
    return rows, counts, credit.client.hgetall(credit.keys.balances(payer.reseller_id))


def unreachable(credit) -> CreditEngine:
    """The same engine, talking to a Redis that does not answer."""
    client = redis.Redis(port=1, protocol=2, retry=Retry(NoBackoff(), 0))
    return CreditEngine(client, credit.keys)


def drifts(factory, credit):
    with factory() as session:
        return reconcile.check(session, credit)


def test_a_charge_lands_in_mysql_history_and_redis(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30])  # the booth used 1.60
    settle_all(factory, credit)

    result = perform(
        factory,
        credit,
        CreditRequest("charge", "clid", payer.clid_id, Decimal("5.25"), comment="paid cash"),
    )

    assert (result.replayed, result.applied) == (False, True)
    assert (result.curcredit_before, result.curcredit_after) == (
        Decimal("1.600000"),
        Decimal("-3.650000"),
    )
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == -3_650_000
    with factory() as session:
        [history] = session.scalars(select(CreditHistory)).all()
        op = session.scalar(select(CreditOperation))
    assert (history.operation, history.amount, history.balance_before) == (
        "charge",
        Decimal("5.250000"),
        Decimal("1.600000"),
    )
    assert (history.clid_id, history.group_id, history.reseller_id) == (
        payer.clid_id,
        payer.group_id,
        payer.reseller_id,
    )
    assert history.comment == "paid cash" and op.applied_at is not None
    # DESIGN.md section 5: CDRs + credit operations == curcredit, in MySQL and in Redis
    assert drifts(factory, credit) == []

    perform(factory, credit, CreditRequest("refund", "group", payer.group_id, Decimal("0.5")))
    assert credit.level(payer.reseller_id, "group", payer.group_id).used == 480_000 + 500_000
    assert drifts(factory, credit) == []


def test_the_same_operation_id_applies_once(ledger):
    factory, credit, payer = ledger
    request = CreditRequest("charge", "clid", payer.clid_id, Decimal("2"), op_id="form-1234")
    perform(factory, credit, request)
    before = snapshot(factory, credit, payer)

    again = perform(factory, credit, request)

    assert again.replayed and again.applied
    assert snapshot(factory, credit, payer) == before
    # the same id for something else is refused, and changes nothing
    with pytest.raises(InvalidInput, match="another operation"):
        perform(
            factory,
            credit,
            CreditRequest("charge", "clid", payer.clid_id, Decimal("3"), op_id="form-1234"),
        )
    assert snapshot(factory, credit, payer) == before


def test_two_clerks_submitting_the_same_form_charge_once(ledger):
    factory, credit, payer = ledger
    request = CreditRequest("charge", "clid", payer.clid_id, Decimal("1"), op_id="double-click")
    errors = []

    def submit():
        try:
            perform(factory, credit, request)
        except Exception as exc:  # the loser of the unique key may fail; it must change nothing
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == -1_000_000
    with factory() as session:
        assert session.get(Clid, payer.clid_id).curcredit == Decimal("-1")
        assert session.scalar(select(func.count()).select_from(CreditHistory)) == 1
    assert drifts(factory, credit) == []


def test_an_operation_redis_missed_is_reapplied_by_the_reconciler(ledger, redis_server):
    factory, credit, payer = ledger
    dead = unreachable(credit)

    result = perform(factory, dead, CreditRequest("charge", "clid", payer.clid_id, Decimal("7")))

    assert not result.applied  # MySQL has it; Redis does not yet
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == 0
    assert drifts(factory, credit) == []  # an unapplied operation is no drift
    assert reapply_pending(factory, dead, older_than_s=0) == 0  # Redis still away

    assert reapply_pending(factory, credit, older_than_s=0) == 1
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == -7_000_000
    assert reapply_pending(factory, credit, older_than_s=0) == 0
    assert drifts(factory, credit) == []


def test_a_crash_between_redis_and_the_applied_mark_never_applies_twice(ledger):
    factory, credit, payer = ledger
    dead = unreachable(credit)
    result = perform(factory, dead, CreditRequest("refund", "clid", payer.clid_id, Decimal("3")))
    # Redis got it, but the process died before MySQL's applied_at was set:
    credit.credit_op(payer.reseller_id, result.op_id, "refund", "clid", payer.clid_id, 3_000_000)

    assert reapply_pending(factory, credit, older_than_s=0) == 1  # marks it, applies nothing

    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == 3_000_000
    assert drifts(factory, credit) == []


def test_limits_types_locks_and_deposits_reach_redis_at_once(ledger):
    factory, credit, payer = ledger
    clid = payer.clid_id
    perform(factory, credit, CreditRequest("set_limit", "clid", clid, Decimal("12.5")))
    perform(factory, credit, CreditRequest("set_limit_type", "clid", clid, value="prepaid"))
    perform(factory, credit, CreditRequest("set_deposit", "clid", clid, Decimal("3")))
    level = credit.level(payer.reseller_id, "clid", clid)
    assert (level.limit, level.limit_type, level.deposit) == (12_500_000, "prepaid", 3_000_000)

    perform(factory, credit, CreditRequest("lock", "clid", clid))
    auth = credit.authorize(payer, pricing_for_germany())
    assert auth.reason == Deny.LOCKED
    with factory() as session:
        row = session.get(Clid, clid)
        assert (row.locked, row.limit_type, row.creditlimit, row.deposit) == (
            True,
            "prepaid",
            Decimal("12.5"),
            Decimal("3"),
        )
    perform(factory, credit, CreditRequest("unlock", "clid", clid))
    perform(factory, credit, CreditRequest("set_deposit", "clid", clid, None))
    assert credit.authorize(payer, pricing_for_germany()).allowed
    assert credit.level(payer.reseller_id, "clid", clid).deposit is None


def pricing_for_germany():
    from lua.credit import Pricing
    from tests.ledger import BUY, DE, OWNER

    return Pricing(DE, BUY, OWNER)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (CreditRequest("charge", "clid", 0, Decimal("1")), "does not exist"),
        (CreditRequest("charge", "clid", -1, Decimal("-1")), "negative"),
        (CreditRequest("charge", "clid", -1, Decimal("0.0000001")), "more than 6 decimals"),
        (CreditRequest("charge", "clid", -1, Decimal("0")), "changes nothing"),
        (CreditRequest("charge", "clid", -1), "needs an amount"),
        (CreditRequest("refund", "clid", -1, Decimal("1e12")), "larger than"),
        (CreditRequest("lock", "group", -1), "clids only"),
        (CreditRequest("set_limit_type", "clid", -1, value="gold"), "not one of"),
        (CreditRequest("steal", "clid", -1, Decimal("1")), "unknown credit operation"),
        (CreditRequest("charge", "booth", -1, Decimal("1")), "unknown level"),
        (CreditRequest("charge", "clid", -1, Decimal("1"), op_id="x" * 65), "1 to 64"),
    ],
)
def test_impossible_operations_are_refused_and_change_nothing(ledger, request_, message):
    factory, credit, payer = ledger
    if request_.target_id == -1:
        request_ = CreditRequest(**{**request_.__dict__, "target_id": payer.clid_id})
    before = snapshot(factory, credit, payer)
    with pytest.raises(InvalidInput, match=message):
        perform(factory, credit, request_)
    assert snapshot(factory, credit, payer) == before


def test_the_credit_command_charges_once_per_operation_id(
    ledger, fresh_mysql_url, key_prefix, tmp_path
):
    from tests.test_cli import run

    factory, credit, payer = ledger
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    args = ("credit", "charge", "20", "--clid", "8001", "--op-id", "till-7", "--comment", "cash")

    first = run(*args, env=env, cwd=tmp_path)
    again = run(*args, env=env, cwd=tmp_path)
    typo = run("credit", "charge", "2O", "--clid", "8001", env=env, cwd=tmp_path)
    nobody = run("credit", "lock", "--clid", "9999", env=env, cwd=tmp_path)
    both = run("credit", "lock", "--clid", "8001", "--group", "r1-shop", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "charge clid 8001: done (operation till-7)" in first.stdout
    assert "credit used 0.000000 -> -20.000000" in first.stdout
    assert "already done, nothing changed" in again.stdout
    assert (typo.returncode, nobody.returncode, both.returncode) == (2, 2, 2)
    assert "'2O' is not an amount" in typo.stderr and "no clid '9999'" in nobody.stderr
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == -20_000_000
    assert drifts(factory, credit) == []


def test_an_old_pending_lock_or_limit_never_lands_over_a_newer_one(ledger):
    """Issue 12: with Redis down, `lock` and `set-limit 6` were kept pending; `unlock` and
    `set-limit 9` were applied when Redis came back; the reconciler then re-applied the
    older ones on top. Absolute operations carry their version now."""
    factory, credit, payer = ledger
    dead, clid = unreachable(credit), payer.clid_id
    older = [
        CreditRequest("lock", "clid", clid),
        CreditRequest("set_limit", "clid", clid, Decimal("6")),
        CreditRequest("set_limit_type", "clid", clid, value="prepaid"),
        CreditRequest("set_deposit", "clid", clid, Decimal("2")),
        CreditRequest("set_limit", "group", payer.group_id, Decimal("60")),
    ]
    assert not any(perform(factory, dead, r).applied for r in older)
    newer = [
        CreditRequest("unlock", "clid", clid),
        CreditRequest("set_limit", "clid", clid, Decimal("9")),
        CreditRequest("set_limit_type", "clid", clid, value="postpaid"),
        CreditRequest("set_deposit", "clid", clid, None),
        CreditRequest("set_limit", "group", payer.group_id, Decimal("90")),
    ]
    assert all(perform(factory, credit, r).applied for r in newer)

    assert reapply_pending(factory, credit, older_than_s=0) == len(older)  # marked applied

    booth = credit.level(payer.reseller_id, "clid", clid)
    assert (booth.locked, booth.limit, booth.limit_type, booth.deposit) == (
        False,
        9_000_000,
        "postpaid",
        None,
    )
    assert credit.level(payer.reseller_id, "group", payer.group_id).limit == 90_000_000
    with factory() as session:
        row = session.get(Clid, clid)
        assert (row.locked, row.creditlimit, row.limit_type, row.deposit) == (
            False,
            Decimal("9"),
            "postpaid",
            None,
        )
        assert session.scalar(select(func.count()).where(CreditOperation.applied_at.is_(None))) == 0
    assert drifts(factory, credit) == []
    # in order, a pending operation still applies: lock after the unlock lands
    perform(factory, dead, CreditRequest("lock", "clid", clid))
    assert reapply_pending(factory, credit, older_than_s=0) == 1
    assert credit.level(payer.reseller_id, "clid", clid).locked


def test_the_credit_command_keeps_the_operation_when_redis_is_down(
    ledger, fresh_mysql_url, key_prefix, tmp_path
):
    from tests.test_cli import run

    factory, credit, payer = ledger
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nobody there
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }

    result = run(
        "credit", "lock", "--clid", "8001", "--op-id", "lock-while-down", env=env, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "kept in MySQL, the reconciler applies it when Redis is back" in result.stdout
    with factory() as session:
        assert session.get(Clid, payer.clid_id).locked
    assert not credit.level(payer.reseller_id, "clid", payer.clid_id).locked
    assert reapply_pending(factory, credit, older_than_s=0) == 1
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).locked
