"""`reconcile --check` compares configuration too, and reports prepaid levels over their
limit, deposits exceeded and calls Asterisk no longer has; `--repair` fixes what it can."""

from __future__ import annotations

from decimal import Decimal

from ami_listener.resync_record import record_resync
from lua.credit import Pricing
from tests.ledger import BUY, DE, OWNER, T0, place_calls
from tests.test_cli import run
from tests.test_credit_ops import unreachable
from workers import reconcile
from workers.credit_ops import CreditRequest, perform
from workers.settle import settle_all


def env_of(fresh_mysql_url, key_prefix):
    return {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }


def findings(factory, credit) -> list[str]:
    with factory() as session:
        return [str(d) for d in reconcile.check(session, credit)]


def test_check_fails_on_a_limit_lock_deposit_or_type_drift_and_repair_fixes_it(
    ledger, fresh_mysql_url, key_prefix, tmp_path
):
    _, credit, payer = ledger
    env = env_of(fresh_mysql_url, key_prefix)
    assert run("reconcile", "--check", env=env, cwd=tmp_path).returncode == 0
    key = credit.keys.balances(payer.reseller_id)
    c, g = f"c{payer.clid_id}", f"g{payer.group_id}"
    credit.client.hset(
        key,
        mapping={
            f"{c}.limit": 6_000_000,
            f"{c}.locked": 1,
            f"{c}.deposit": 2_000_000,
            f"{g}.type": "prepaid",
        },
    )

    checked = run("reconcile", "--check", env=env, cwd=tmp_path)

    assert checked.returncode == 1
    out = checked.stdout
    assert f"clid {payer.clid_id}: Redis limit is 6.000000, MySQL 0.000000" in out
    assert f"clid {payer.clid_id}: Redis lock is locked, MySQL unlocked" in out
    assert f"clid {payer.clid_id}: Redis deposit is 2.000000, MySQL none" in out
    assert f"group {payer.group_id}: Redis limit type is prepaid, MySQL none" in out

    repaired = run("reconcile", "--repair", env=env, cwd=tmp_path)

    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert run("reconcile", "--check", env=env, cwd=tmp_path).returncode == 0


def test_an_operation_waiting_for_redis_is_no_configuration_drift(ledger):
    factory, credit, payer = ledger
    perform(factory, unreachable(credit), CreditRequest("lock", "clid", payer.clid_id))
    assert findings(factory, credit) == []  # the reconciler will apply it


def test_check_reports_a_prepaid_level_over_its_limit_and_a_deposit_exceeded(
    ledger, fresh_mysql_url, key_prefix, tmp_path
):
    factory, credit, payer = ledger
    env = env_of(fresh_mysql_url, key_prefix)
    place_calls(credit, payer, [150, 30])  # the booth used 1.60, unbilled
    settle_all(factory, credit)
    clid = payer.clid_id
    for request in (
        CreditRequest("set_limit_type", "clid", clid, value="prepaid"),
        CreditRequest("set_limit", "clid", clid, Decimal("1")),
        CreditRequest("set_deposit", "clid", clid, Decimal("1.5")),
    ):
        perform(factory, credit, request)

    checked = run("reconcile", "--check", env=env, cwd=tmp_path)

    assert checked.returncode == 1
    assert (
        f"ALERT clid {clid}: prepaid over its limit: MySQL credit used 1.600000, limit "
        "1.000000 (over by 0.600000)" in checked.stdout
    )
    assert f"ALERT clid {clid}: prepaid over its limit: Redis credit used 1.600000" in (
        checked.stdout
    )
    assert (
        f"ALERT clid {clid}: deposit exceeded: unbilled 1.600000 over the deposit 1.500000"
        in checked.stdout
    )
    repaired = run("reconcile", "--repair", env=env, cwd=tmp_path)
    assert repaired.returncode == 1  # a rebuild cannot pay for what was talked
    assert f"CANNOT REPAIR clid {clid}: prepaid over its limit" in repaired.stdout
    # money received brings it back under its limit
    perform(factory, credit, CreditRequest("charge", "clid", clid, Decimal("0.6")))
    assert [f for f in findings(factory, credit) if "prepaid" in f] == []


def test_check_reports_a_call_asterisk_did_not_list_at_the_last_resync(ledger):
    factory, credit, payer = ledger
    credit.answer("1795000000.1", payer, Pricing(DE, BUY, OWNER), T0)  # still up
    credit.answer("1795000000.2", payer, Pricing(DE, BUY, OWNER), T0)  # a phantom
    credit.answer("1795000000.3", payer, Pricing(DE, BUY, OWNER), T0 + 9000)  # after it
    assert findings(factory, credit) == []  # no resync recorded yet

    record_resync(credit.client, credit.keys, {"1795000000.1"}, T0 + 5000)

    assert findings(factory, credit) == [
        f"clid {payer.clid_id}: call 1795000000.2 is live in Redis but Asterisk did not list "
        "it at the last resync (restart the listener: its resync ends it)"
    ]
