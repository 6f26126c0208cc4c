"""Settlement on real MariaDB and Redis: CDRs and balances written once, whatever happens."""

from __future__ import annotations

import threading
from decimal import Decimal

from sqlalchemy import func, select

from lua.credit import Pricing
from schema import AccountGroup, Cdr, Clid, Reseller
from tests.conftest import REDIS_SERVER
from tests.ledger import BUY, DE, OWNER, T0, place_calls
from workers import reconcile
from workers.settle import settle_all, settle_pending


def balances(factory, payer):
    with factory() as session:
        return (
            session.get(Clid, payer.clid_id),
            session.get(AccountGroup, payer.group_id),
            session.get(Reseller, payer.reseller_id),
        )


def test_ended_calls_become_cdrs_and_balances(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30, 0])

    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.written, report.already) == (3, 0)
    with factory() as session:
        cdrs = session.scalars(select(Cdr).order_by(Cdr.uniqueid)).all()
    assert [(c.uniqueid, c.billsec, c.credit) for c in cdrs] == [
        ("call-0", 150, Decimal("1.200000")),
        ("call-1", 30, Decimal("0.400000")),
        ("call-2", 0, Decimal("0.000000")),
    ]
    first = cdrs[0]
    assert (first.callshop_credit, first.reseller_credit) == (
        Decimal("0.360000"),
        Decimal("0.180000"),
    )
    assert (first.dst, first.destination, first.billing_status, first.customer_rate_id) == (
        "0049301234567",
        "Germany",
        "UNBILLED",
        5,
    )
    assert (first.ended_at - first.answered_at).total_seconds() == 150.3
    clid, group, reseller = balances(factory, payer)
    assert (
        clid.curcredit
        == Decimal("1.600000")
        == credit.level(payer.reseller_id, "clid", payer.clid_id).used / Decimal(10**6)
    )
    assert group.curcredit == Decimal("0.480000")  # 3 + 1 blocks at 0.12/min
    assert reseller.curcredit == Decimal("0.240000")  # 3 + 1 blocks at 0.06/min
    assert (reseller.credit_clid, reseller.credit_group) == (Decimal("1.6"), Decimal("0.48"))
    # Redis live balances == MySQL once nothing is running (DESIGN.md section 5).
    for level, row in (("clid", clid), ("group", group), ("reseller", reseller)):
        used = credit.level(payer.reseller_id, level, row.id).used
        assert row.curcredit == Decimal(used) / 10**6, level
    assert credit.client.hlen(credit.keys.ended(payer.reseller_id)) == 0
    assert credit.client.hlen(credit.keys.meta(payer.reseller_id)) == 0


def test_unanswered_refused_and_unknown_calls_become_cdrs_at_cost_zero(ledger):
    factory, credit, payer = ledger
    meta = '{{"dst":"0049301234567","src":"8001","disposition":"{}","dialed_us":{},"flags":{}}}'
    credit.record_unpaid("busy-1", payer, T0, 0, T0 + 4000, 0, meta.format("BUSY", T0 * 1000, "[]"))
    credit.record_unpaid(
        "locked-1", payer, T0, 0, T0 + 100, 0, meta.format("NO ANSWER", T0 * 1000, '["locked"]')
    )
    # an unknown caller that talked 42 s: recorded, not billed, under tag 0
    credit.record_unpaid(
        "stranger-1",
        None,
        T0,
        T0 + 2000,
        T0 + 44_500,
        42,
        meta.format("ANSWERED", T0 * 1000, '["unknown_payer"]'),
    )
    # a replayed hangup never overwrites a record
    assert not credit.record_unpaid("busy-1", payer, T0, 0, T0, 0, "{}")

    report = settle_all(factory, credit)

    assert (report.written, report.already) == (3, 0)
    with factory() as session:
        cdrs = {c.uniqueid: c for c in session.scalars(select(Cdr))}
    busy, locked, stranger = cdrs["busy-1"], cdrs["locked-1"], cdrs["stranger-1"]
    assert (busy.disposition, busy.billsec, busy.answered_at, busy.duration) == (
        "BUSY",
        0,
        None,
        4,
    )
    assert (busy.clid_id, busy.credit, busy.callshop_credit) == (payer.clid_id, 0, 0)
    assert (locked.disposition, locked.review_reason) == ("NO ANSWER", "locked")
    assert (stranger.disposition, stranger.billsec, stranger.clid_id) == ("ANSWERED", 42, None)
    assert (stranger.reseller_id, stranger.credit, stranger.review_reason) == (
        None,
        0,
        "unknown_payer",
    )
    clid, group, reseller = balances(factory, payer)
    assert clid.curcredit == group.curcredit == reseller.curcredit == 0
    with factory() as session:
        assert reconcile.check(session, credit) == []
    assert credit.resellers_with_calls("ended") == []


def test_a_replayed_settlement_changes_nothing(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [61, 61])
    ended = credit.client.hgetall(credit.keys.ended(payer.reseller_id))
    settle_pending(factory, credit, payer.reseller_id)
    before = [b.curcredit for b in balances(factory, payer)]

    # A crash after the commit but before Redis forgot the calls: they are delivered again.
    credit.client.hset(credit.keys.ended(payer.reseller_id), mapping=ended)
    report = settle_pending(factory, credit, payer.reseller_id)

    assert (report.written, report.already) == (0, 2)
    assert [b.curcredit for b in balances(factory, payer)] == before
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Cdr)) == 2
    assert credit.client.hlen(credit.keys.ended(payer.reseller_id)) == 0


def test_two_workers_on_the_same_calls_settle_them_once(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, list(range(1, 200, 7)))
    reports, errors = [], []

    def worker():
        try:
            reports.append(settle_pending(factory, credit, payer.reseller_id))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sum(r.written for r in reports) == 29
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Cdr)) == 29
        total = session.scalar(select(func.sum(Cdr.credit)))
    clid, _, _ = balances(factory, payer)
    assert clid.curcredit == total


def test_the_settle_command_sweeps_every_reseller(ledger, fresh_mysql_url, key_prefix, tmp_path):
    from tests.test_cli import run

    factory, credit, payer = ledger
    place_calls(credit, payer, [10, 20, 70])
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }

    first = run("settle", env=env, cwd=tmp_path)
    again = run("settle", env=env, cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert "settled 3 call(s)" in first.stdout and "settled 0 call(s)" in again.stdout
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Cdr)) == 3


def test_reconcile_finds_no_drift_while_calls_run_and_after_settlement(ledger):
    from workers.reconcile import check

    factory, credit, payer = ledger
    place_calls(credit, payer, [61, 130])  # ended, not yet settled
    credit.answer("running", payer, Pricing(DE, BUY, OWNER), T0)  # still talking
    with factory() as session:
        assert check(session, credit) == []
    settle_pending(factory, credit, payer.reseller_id)
    with factory() as session:
        assert check(session, credit) == []


def test_reconcile_reports_drift_to_the_micro_unit(ledger, fresh_mysql_url, key_prefix, tmp_path):
    from tests.test_cli import run

    factory, credit, payer = ledger
    place_calls(credit, payer, [61])
    settle_pending(factory, credit, payer.reseller_id)
    with factory() as session, session.begin():
        session.get(AccountGroup, payer.group_id).curcredit += Decimal("0.000001")
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }

    result = run("reconcile", "--check", env=env, cwd=tmp_path)

    assert result.returncode == 1
    assert f"DRIFT group {payer.group_id}: MySQL curcredit is 0.240001, expected 0.240000" in (
        result.stdout
    )
    assert f"DRIFT group {payer.group_id}: Redis used is 0.240000, expected 0.240001" in (
        result.stdout
    )
