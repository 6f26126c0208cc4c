"""The CDR rollup on real MariaDB: kept by settlement, exact after retries, replays and
check-outs, and equal to a rebuild from the CDRs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from schema import Cdr, CdrRollup
from tests.ledger import place_calls
from workers.rollup import differences, move_billing, rebuild
from workers.settle import read_ended, settle, settle_pending


def rollup_totals(factory):
    with factory() as session:
        return session.execute(
            select(
                func.sum(CdrRollup.calls),
                func.sum(CdrRollup.answered),
                func.sum(CdrRollup.billsec),
                func.sum(CdrRollup.billed_minutes),
                func.sum(CdrRollup.credit),
                func.sum(CdrRollup.callshop_credit),
                func.sum(CdrRollup.reseller_credit),
            )
        ).one()


def test_settlement_keeps_the_rollup_equal_to_the_cdrs(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30, 0])

    settle_pending(factory, credit, payer.reseller_id)

    calls, answered, billsec, minutes, amount, shop, reseller = rollup_totals(factory)
    assert (calls, answered, billsec, minutes) == (3, 3, 180, 4)
    assert (amount, shop, reseller) == (
        Decimal("1.600000"),
        Decimal("0.480000"),
        Decimal("0.240000"),
    )
    with factory() as session:
        assert differences(session.connection()) == []
        row = session.scalars(select(CdrRollup)).first()
    assert row.hour.minute == 0 and row.reseller_id == payer.reseller_id


def test_a_retried_batch_adds_nothing_to_the_rollup(ledger):
    """A worker that committed and crashed before forgetting the calls in Redis: the next run
    settles the same calls again (and a second run after that)."""
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30])
    calls = read_ended(credit, payer.reseller_id)
    for _ in range(3):  # the first run, then two replays of the same batch
        with factory() as session, session.begin():
            settle(session, calls)
    settle_pending(factory, credit, payer.reseller_id)  # and the normal path on top

    assert rollup_totals(factory)[:4] == (2, 2, 180, 4)
    with factory() as session:
        assert differences(session.connection()) == []


def test_a_rolled_back_batch_leaves_the_rollup_untouched(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [60])
    calls = read_ended(credit, payer.reseller_id)
    with factory() as session, session.begin():
        settle(session, calls)
        session.rollback()
    assert rollup_totals(factory)[0] is None
    settle_pending(factory, credit, payer.reseller_id)
    assert rollup_totals(factory)[0] == 1


def test_a_check_out_moves_the_figures_to_billed(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30, 45])
    settle_pending(factory, credit, payer.reseller_id)

    def check_out(cdr):
        cdr.billing_status, cdr.payment, cdr.billed_by = "BILLED", "cash", None
        cdr.billed_at = datetime(2026, 12, 1, 12)

    with factory() as session, session.begin():
        two = session.scalars(
            select(Cdr).where(Cdr.uniqueid.in_(("call-0", "call-1"))).with_for_update()
        ).all()
        move_billing(session, two, check_out)

    with factory() as session:
        by_status = dict(
            session.execute(
                select(CdrRollup.billing_status, func.sum(CdrRollup.credit)).group_by(
                    CdrRollup.billing_status
                )
            ).all()
        )
        assert differences(session.connection()) == []
    assert by_status == {"BILLED": Decimal("1.600000"), "UNBILLED": Decimal("0.400000")}


def test_rebuild_equals_what_settlement_kept_and_the_check_finds_drift(ledger):
    factory, credit, payer = ledger
    place_calls(credit, payer, [150, 30, 0])
    settle_pending(factory, credit, payer.reseller_id)
    kept = rollup_totals(factory)

    with factory() as session, session.begin():
        session.execute(CdrRollup.__table__.update().values(credit=CdrRollup.credit + 1))
    with factory() as session:
        drift = differences(session.connection())
    assert len(drift) == 1 and "rollup" in drift[0]

    with factory() as session, session.begin():
        assert rebuild(session.connection()) == 1
    assert rollup_totals(factory) == kept
    with factory() as session:
        assert differences(session.connection()) == []


def test_reconcile_check_reports_a_rollup_that_disagrees(
    ledger, fresh_mysql_url, key_prefix, tmp_path
):
    from tests.conftest import REDIS_SERVER
    from tests.test_cli import run

    factory, credit, payer = ledger
    place_calls(credit, payer, [61])
    settle_pending(factory, credit, payer.reseller_id)
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": REDIS_SERVER,
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }
    assert run("reconcile", "--check", env=env, cwd=tmp_path).returncode == 0
    with factory() as session, session.begin():
        session.execute(CdrRollup.__table__.update().values(billsec=CdrRollup.billsec + 1))

    result = run("reconcile", "--check", env=env, cwd=tmp_path)

    assert result.returncode == 1
    assert "DRIFT rollup" in result.stdout and "CDRs (1, 1, 61, 2," in result.stdout


def test_workers_racing_on_the_same_calls_keep_the_rollup_exact(ledger):
    """Three workers on the same batch: one commits, the others fail on the CDRs' unique key
    (or a deadlock), roll back their rollup rows with it, retry and find the CDRs."""
    import threading

    factory, credit, payer = ledger
    place_calls(credit, payer, list(range(1, 300, 7)))
    errors = []

    def worker():
        try:
            settle_pending(factory, credit, payer.reseller_id, attempts=5)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert rollup_totals(factory)[0] == 43
    with factory() as session:
        assert differences(session.connection()) == []


def test_the_migration_fills_the_rollup_from_cdrs_settled_before_it(fresh_mysql_url):
    from sqlalchemy import text

    from schema import migrate
    from schema.db import make_engine

    engine = make_engine(fresh_mysql_url)
    try:
        migrate.upgrade(engine, "0002_a1_session_versions")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO cdrs (uniqueid, leg, linkedid, calldate, disposition, billsec, "
                    "destination, credit, callshop_credit, reseller_credit, billing_status, "
                    "settled_at) VALUES ('old-1', 'booth', '', '2026-03-29 01:30:00.250000', "
                    "'ANSWERED', 61, 'Germany', 0.8, 0.3, 0.1, 'UNBILLED', NOW())"
                )
            )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(select(CdrRollup)).one()
            assert differences(conn) == []
        assert (row.hour, row.calls, row.billed_minutes, row.credit) == (
            datetime(2026, 3, 29, 1),
            1,
            2,
            Decimal("0.800000"),
        )
    finally:
        engine.dispose()


def test_on_the_embedded_sqlite_a_rebuilt_rollup_keeps_one_row_per_bucket(tmp_path):
    """SQLite stores a DateTime as text: the rebuild must write the hour in the same text as
    the upsert, or the next settled call opens a second row for the same hour."""
    from sqlalchemy import insert

    from schema import migrate
    from schema.db import make_engine, session_factory
    from workers.rollup import add_cdrs

    engine = make_engine(f"sqlite:///{tmp_path / 'embedded.sqlite3'}")
    migrate.upgrade(engine)
    factory = session_factory(engine)
    rows = [
        {
            "uniqueid": f"x{i}",
            "calldate": datetime(2026, 3, 29, 1, 30, i),
            "disposition": "ANSWERED",
            "billsec": 61,
            "destination": "Germany",
            "credit": Decimal("0.25"),
        }
        for i in range(3)
    ]
    with factory() as session, session.begin():
        session.execute(insert(Cdr.__table__), rows[:2])
        add_cdrs(session, rows[:2])
    with engine.begin() as conn:
        rebuild(conn)
    with factory() as session, session.begin():  # a call settled after the rebuild
        session.execute(insert(Cdr.__table__), rows[2:])
        add_cdrs(session, rows[2:])
    with engine.connect() as conn:
        assert [r.calls for r in conn.execute(select(CdrRollup))] == [3]
        assert differences(conn) == []
    engine.dispose()
