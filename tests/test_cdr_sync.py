"""`asterbill cdr-sync`: flagged calls corrected from Asterisk's own CDRs (capture 25's
Master.csv rows, and the `cdr` table of cdr_mysql), exactly once, on real MariaDB and Redis."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select, text

from lua.credit import CreditEngine, Pricing
from ops.errors import InvalidInput
from rating.book import RedisRateBook
from rating.money import stored_micros
from rating.price import Rate
from rating.store import sync_all
from schema import (
    AccountGroup,
    CallshopRate,
    Cdr,
    Clid,
    CreditHistory,
    CreditOperation,
    CustomerRate,
    Reseller,
    ResellerRate,
)
from tests.ami_captures import events
from tests.test_cli import free_port, run
from workers import reconcile
from workers.asterisk_cdrs import read_master_csv, write_master_csv
from workers.cdr_sync import choose, follow_earlier_in_redis, synchronize
from workers.credit_ops import reapply_pending
from workers.settle import read_ended, settle

CAPTURE = Path(__file__).parent / "data" / "ami-captures" / "25-listener-disconnected.jsonl"
T0 = 1_796_162_821_000  # call A's answer (capture 25), ms
CALL_A = "1796162819.1"  # call A: Asterisk's CDR says billsec 6; the listener billed 20


def capture_rows() -> list[dict]:
    """Asterisk's Master.csv rows of capture 25, in cdr_csv's columns."""
    header = json.loads(CAPTURE.open().readline())
    return [
        {
            **row,
            "src": row["source"],
            "dst": row["destination"],
            "dcontext": "callshop",
            "clid": f'"Booth {row["source"]}" <{row["source"]}>',
            "lastdata": "",
            "amaflags": "DOCUMENTATION",
            "userfield": "",
        }
        for row in header["observed"]["cdr_csv"]
    ]


@pytest.fixture
def priced(ledger):
    """The ledger's booth with rate rows in MySQL (per second, so 14 s is visible)."""
    factory, credit, payer = ledger
    with factory() as session, session.begin():
        rows = [
            model(
                dialprefix=prefix,
                destination=name,
                connectcharge=0,
                rateinitial=Decimal(rate),
                billingblock=1,
            )
            for model, prefix, name, rate in (
                (CustomerRate, "0049", "Germany", "0.6"),
                (CallshopRate, "0049", "Germany", "0.3"),
                (ResellerRate, "00", "World", "0.12"),
            )
        ]  # per minute, in 1 s blocks
        session.add_all(rows)
        session.flush()
        rates = [Rate(r.id, 0, 0, int(r.rateinitial * 1_000_000), 1) for r in rows]
    return factory, credit, payer, Pricing(*rates)


def bill_flagged_call(factory, credit, payer, pricing, call_id=CALL_A, billsec=20):
    """A call the listener billed `billsec` s to its reconnect, flagged, then settled."""
    meta = json.dumps(
        {
            "channel": "Local/00493012345678@callshop-00000000;2",
            "src": "8001",
            "dst": "00493012345678",
            "dialed_us": (T0 - 2000) * 1000,
            "review": "ended_while_disconnected",
        }
    )
    credit.answer(call_id, payer, pricing, T0, meta=meta)
    credit.end(call_id, payer.reseller_id, T0 + billsec * 1000 + 10, billsec, meta=meta)
    with factory() as session, session.begin():
        settle(session, read_ended(credit, payer.reseller_id))
    credit.client.delete(credit.keys.ended(payer.reseller_id), credit.keys.meta(payer.reseller_id))


def balances(factory, credit, payer):
    """(MySQL curcredit, Redis used, lifetime totals in MySQL and in Redis) of clid, group,
    reseller; and the booth's unbilled amount in Redis (its deposit room)."""
    out = []
    with factory() as s:
        for name, model, level_id in (
            ("clid", Clid, payer.clid_id),
            ("group", AccountGroup, payer.group_id),
            ("reseller", Reseller, payer.reseller_id),
        ):
            row = s.get(model, level_id)
            live = credit.level(payer.reseller_id, name, level_id)
            totals = (row.credit_clid, row.credit_group, row.credit_reseller)
            assert tuple(stored_micros(t) for t in totals) == live.totals, name
            out.append((row.curcredit, live.used, totals))
    out.append(credit.level(payer.reseller_id, "clid", payer.clid_id).unbilled)
    return out


def no_drift(factory, credit):
    with factory() as session:
        return reconcile.check(session, credit)


def test_a_call_billed_20_s_where_asterisk_says_6_is_refunded_once(priced, tmp_path):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing)
    assert no_drift(factory, credit) == []
    master = tmp_path / "Master.csv"
    master.write_text(write_master_csv(capture_rows()))
    source = read_master_csv(master)
    assert source.errors == [] and len(source.records) == 9
    dry = synchronize(factory, credit, source.records, dry_run=True)
    assert dry.corrected[0].startswith(f"{CALL_A}: would change billsec 20 -> 6")
    with factory() as s:
        assert s.scalar(select(Cdr.billsec)) == 20  # a dry run changes nothing
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 0

    report = synchronize(factory, credit, source.records)

    assert len(report.corrected) == 1 and report.skipped == report.not_found == []
    assert "billsec 20 -> 6" in report.corrected[0]
    with factory() as s:
        cdr = s.scalar(select(Cdr))
        assert (cdr.billsec, cdr.duration, cdr.disposition) == (6, 8, "ANSWERED")
        assert (cdr.credit, cdr.callshop_credit, cdr.reseller_credit) == (
            Decimal("0.06"),
            Decimal("0.03"),
            Decimal("0.012"),
        )
        assert cdr.review_reason == "corrected_from_asterisk_cdr"
        assert cdr.ended_at == datetime(2026, 12, 1, 22, 7, 7)
        history = s.execute(
            select(CreditHistory.level, CreditHistory.operation, CreditHistory.amount)
            .order_by(CreditHistory.id)
        ).all()  # fmt: skip
        assert history == [
            ("clid", "charge", Decimal("0.14")),
            ("group", "charge", Decimal("0.07")),
            ("reseller", "charge", Decimal("0.028")),
        ]
        comment = s.scalar(select(CreditHistory.comment).limit(1))
        assert "Asterisk's CDR says 6 s" in comment and CALL_A in comment
    totals = (Decimal("0.06"), Decimal("0.03"), Decimal("0.012"))
    assert balances(factory, credit, payer) == [
        (Decimal("0.06"), 60_000, totals),
        (Decimal("0.03"), 30_000, totals),
        (Decimal("0.012"), 12_000, totals),
        60_000,
    ]
    assert no_drift(factory, credit) == []

    again = synchronize(factory, credit, read_master_csv(master).records)

    assert again.corrected == [] and again.skipped == [] and again.not_found == []
    assert balances(factory, credit, payer)[0] == (Decimal("0.06"), 60_000, totals)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 3
    assert no_drift(factory, credit) == []


def test_a_call_asterisk_billed_longer_is_charged_the_difference(priced, tmp_path):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing, billsec=2)

    report = synchronize(factory, credit, read_master_rows(tmp_path))

    assert "billsec 2 -> 6" in report.corrected[0]
    with factory() as s:
        ops = s.execute(select(CreditHistory.operation, CreditHistory.amount)).all()
    assert ops[0] == ("refund", Decimal("0.04"))  # credit used goes up by 4 s
    assert balances(factory, credit, payer)[3] == 60_000  # the booth's unbilled follows
    assert balances(factory, credit, payer)[0][:2] == (Decimal("0.06"), 60_000)
    assert no_drift(factory, credit) == []


def read_master_rows(tmp_path):
    master = tmp_path / "Master.csv"
    master.write_text(write_master_csv(capture_rows()))
    return read_master_csv(master).records


def test_unknown_uniqueids_and_unflagged_calls_are_reported_not_touched(priced, tmp_path):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing, call_id="1796000000.9")

    report = synchronize(factory, credit, read_master_rows(tmp_path))

    assert report.corrected == [] and report.not_found == ["1796000000.9: not in Asterisk's CDRs"]
    assert CALL_A in report.unmatched_rows  # Asterisk's rows of calls not flagged here
    with factory() as s:
        assert s.scalar(select(Cdr.billsec)) == 20
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 0


def test_a_csv_with_malformed_lines_names_each_line_and_corrects_the_rest(
    priced, tmp_path, key_prefix, fresh_mysql_url
):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing)
    good = write_master_csv(capture_rows()).splitlines()
    first = capture_rows()[0]

    def line(**changes) -> str:
        return write_master_csv([{**first, **changes}]).strip()

    bad = [
        '"shop1","8001","0049","callshop","x","Local/x;2"',  # too few columns
        line(billsec="three"),  # billsec not a number
        line(start="yesterday"),  # a start that is no time
        line(disposition="MAYBE"),  # an unknown disposition
        '"shop1","8001","unterminated',  # a broken quote
    ]
    master = tmp_path / "Master.csv"
    master.write_text("\n".join(bad[:2] + good + bad[2:]) + "\n")
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ASTERBILL_KEY_PREFIX": key_prefix,
    }

    result = run("cdr-sync", "--csv", str(master), env=env, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("BAD ROW")]
    assert errors == [
        "BAD ROW Master.csv line 1: 6 columns, expected 18 (cdr_csv with loguniqueid and "
        "loguserfield) or 21 (with newcdrcolumns)",
        "BAD ROW Master.csv line 2: billsec 'three' is not a whole number of seconds",
        "BAD ROW Master.csv line 12: start 'yesterday' is not a time (YYYY-MM-DD HH:MM:SS)",
        "BAD ROW Master.csv line 13: disposition 'MAYBE' is not one of ANSWERED, NO ANSWER, "
        "BUSY, FAILED, CONGESTION",
        f"BAD ROW Master.csv line 14: {error_of_broken_quote()}",
    ]
    assert f"CORRECTED {CALL_A}: billsec 20 -> 6" in result.stdout
    assert "1 call(s) corrected" in result.stdout and "5 bad row(s)" in result.stdout
    assert "8 Asterisk row(s) of other calls" in result.stdout  # read, then left out
    with factory() as s:
        assert s.scalar(select(Cdr.billsec)) == 6
    assert no_drift(factory, credit) == []


def error_of_broken_quote() -> str:
    import csv

    try:
        next(csv.reader(['"shop1","8001","unterminated'], strict=True))
    except csv.Error as exc:
        return str(exc)
    raise AssertionError("csv accepted a broken quote")


CDR_TABLE = """CREATE TABLE cdr (
  calldate datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  clid varchar(80) NOT NULL DEFAULT '', src varchar(80) NOT NULL DEFAULT '',
  dst varchar(80) NOT NULL DEFAULT '', dcontext varchar(80) NOT NULL DEFAULT '',
  channel varchar(80) NOT NULL DEFAULT '', dstchannel varchar(80) NOT NULL DEFAULT '',
  lastapp varchar(80) NOT NULL DEFAULT '', lastdata varchar(80) NOT NULL DEFAULT '',
  duration int(11) NOT NULL DEFAULT 0, billsec int(11) NOT NULL DEFAULT 0,
  disposition varchar(45) NOT NULL DEFAULT '', amaflags int(11) NOT NULL DEFAULT 0,
  accountcode varchar(20) NOT NULL DEFAULT '', uniqueid varchar(32) NOT NULL DEFAULT '',
  userfield varchar(255) NOT NULL DEFAULT '', KEY calldate (calldate), KEY uniqueid (uniqueid)
)"""  # the table of Asterisk's contrib/scripts mysql_cdr.sql (cdr_mysql / cdr_adaptive_odbc)


CDR_INSERT = """INSERT INTO cdr (calldate, clid, src, dst, dcontext, channel, dstchannel,
  lastapp, lastdata, duration, billsec, disposition, amaflags, accountcode, uniqueid, userfield)
  VALUES (:calldate, :clid, :src, :dst, :dcontext, :channel, :dstchannel, :lastapp, :lastdata,
  :duration, :billsec, :disposition, :amaflags, :accountcode, :uniqueid, :userfield)"""


def test_the_cdr_table_of_cdr_mysql_corrects_the_call_and_reports_garbage(
    priced, tmp_path, key_prefix, fresh_mysql_url
):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing)
    bill_flagged_call(factory, credit, payer, pricing, call_id="1796000000.7")  # garbage row
    bill_flagged_call(factory, credit, payer, pricing, call_id="1796000000.8")  # no row
    with factory() as s, s.begin():
        s.execute(text(CDR_TABLE))
        insert = text(CDR_INSERT)
        for row in capture_rows():
            s.execute(insert, {**row, "calldate": row["start"], "amaflags": 3, "lastdata": ""})
        garbage = {**capture_rows()[1], "uniqueid": "1796000000.7", "disposition": "WHATEVER"}
        s.execute(insert, {**garbage, "calldate": garbage["start"], "amaflags": 3})
    env = {
        "DATABASE_URL": fresh_mysql_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ASTERBILL_KEY_PREFIX": key_prefix,
        "ASTERBILL_ASTERISK_CDR_URL": fresh_mysql_url,
    }

    result = run("cdr-sync", env=env, cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert "BAD ROW cdr row uniqueid '1796000000.7': disposition 'WHATEVER'" in result.stderr
    assert f"CORRECTED {CALL_A}: billsec 20 -> 6" in result.stdout
    assert "NOT FOUND 1796000000.8: not in Asterisk's CDRs" in result.stdout
    assert "NOT FOUND 1796000000.7: not in Asterisk's CDRs" in result.stdout
    with factory() as s:
        cdr = s.scalar(select(Cdr).where(Cdr.uniqueid == CALL_A))
        assert (cdr.billsec, cdr.credit, cdr.ended_at) == (
            6,
            Decimal("0.06"),
            datetime(2026, 12, 1, 22, 7, 7),  # calldate + duration: the table keeps no end
        )
    assert no_drift(factory, credit) == []

    again = run("cdr-sync", env=env, cwd=tmp_path)

    assert "0 call(s) corrected" in again.stdout
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 3
    check = run("reconcile", "--check", env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_flagged_call_never_rated_is_filled_in_with_the_rates_of_its_number(priced, tmp_path):
    """Its answer was not seen: recorded unbilled and flagged; Asterisk says it talked 6 s."""
    factory, credit, payer, _ = priced
    book = RedisRateBook(credit.client, credit.keys)
    with factory() as session:
        sync_all(session, book)
    meta = json.dumps(
        {
            "channel": "Local/00493012345678@callshop-00000000;2",
            "src": "8001",
            "dst": "00493012345678",
            "dialed_us": (T0 - 2000) * 1000,
            "review": "answer_not_seen",
            "disposition": "NO ANSWER",
        }
    )
    credit.record_unpaid(CALL_A, payer, T0 - 2000, 0, T0 + 3000, 0, meta)
    with factory() as session, session.begin():
        settle(session, read_ended(credit, payer.reseller_id))

    report = synchronize(factory, credit, read_master_rows(tmp_path), book=book)

    assert "billsec 0 -> 6" in report.corrected[0]
    with factory() as s:
        cdr = s.scalar(select(Cdr))
        ids = (cdr.customer_rate_id, cdr.callshop_rate_id, cdr.reseller_rate_id)
        assert (cdr.disposition, cdr.billsec, cdr.credit) == ("ANSWERED", 6, Decimal("0.06"))
        assert cdr.answered_at == datetime(2026, 12, 1, 22, 7, 1)
        assert cdr.rated_number == "00493012345678" and cdr.destination == "Germany"
        assert cdr.rate_memo == (
            f"customer 0049 Germany (#{ids[0]}): 0.6/min, 1 s blocks | callshop 0049 Germany "
            f"(#{ids[1]}): 0.3/min, 1 s blocks | reseller 00 World (#{ids[2]}): 0.12/min, "
            "1 s blocks"
        )
        history = s.execute(select(CreditHistory.operation, CreditHistory.amount)).all()
    assert history[0] == ("refund", Decimal("0.06"))  # credit used goes up: it was not billed
    assert balances(factory, credit, payer)[0][:2] == (Decimal("0.06"), 60_000)
    assert no_drift(factory, credit) == []


def test_asterisks_local_times_are_read_in_its_zone_and_a_bad_zone_is_refused(tmp_path):
    master = tmp_path / "Master.csv"
    row = {**capture_rows()[4], "start": "2026-07-01 23:59:58", "answer": "2026-07-02 00:00:00"}
    master.write_text(write_master_csv([{**row, "end": "2026-07-02 00:00:06"}]))

    [cdr] = read_master_csv(master, "Europe/Berlin").records

    assert (cdr.start, cdr.answer, cdr.end) == (
        datetime(2026, 7, 1, 21, 59, 58),  # CEST is UTC+2
        datetime(2026, 7, 1, 22, 0, 0),
        datetime(2026, 7, 1, 22, 0, 6),
    )
    with pytest.raises(InvalidInput, match="time zone 'Mars/Olympus' is not known"):
        read_master_csv(master, "Mars/Olympus")


def test_a_redirected_call_is_matched_to_its_own_dial_cdr(tmp_path):
    """Capture 23: one booth channel, two Dial CDRs (before and after the AMI Redirect); the
    listener's calls `<uniqueid>` and `<uniqueid>#2` each take theirs."""
    path = Path(__file__).parent / "data" / "ami-captures" / "23-ts-transfer-or-redirect.jsonl"
    rows = []
    for _, e in events(path):
        if e.get("Event") == "Cdr":
            rows.append(
                {
                    "src": e["Source"],
                    "dst": e["Destination"],
                    "channel": e["Channel"],
                    "dstchannel": e["DestinationChannel"],
                    "lastapp": e["LastApplication"],
                    "start": e["StartTime"],
                    "answer": e["AnswerTime"],
                    "end": e["EndTime"],
                    "duration": e["Duration"],
                    "billsec": e["BillableSeconds"],
                    "disposition": e["Disposition"],
                    "uniqueid": e["UniqueID"],
                }
            )
    master = tmp_path / "Master.csv"
    master.write_text(write_master_csv(reversed(rows)))  # file order does not matter
    records = read_master_csv(master).records

    first = choose(Cdr(uniqueid="1795684623.1"), records)
    second = choose(Cdr(uniqueid="1795684623.1#2"), records)

    assert (first.billsec, first.dstchannel) == (4, "Local/0048221234567@pstn-sim-00000001;1")
    assert (second.billsec, second.dstchannel) == (8, "Local/0033142685300@pstn-sim-00000002;1")
    assert choose(Cdr(uniqueid="1795684623.1#3"), records) is None


def test_with_redis_down_the_correction_waits_in_mysql_and_the_reconciler_applies_it(
    priced, tmp_path
):
    factory, credit, payer, pricing = priced
    bill_flagged_call(factory, credit, payer, pricing)
    down = CreditEngine(redis.Redis(port=free_port(), socket_timeout=1), credit.keys)

    report = synchronize(factory, down, read_master_rows(tmp_path))

    assert "billsec 20 -> 6" in report.corrected[0]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(CreditOperation)) == 3
        assert s.scalar(select(Clid.curcredit)) == Decimal("0.06")  # the ledger has it
    assert credit.level(payer.reseller_id, "clid", payer.clid_id).used == 200_000  # not yet
    assert no_drift(factory, credit) == []  # known as waiting for Redis, not as drift

    assert reapply_pending(factory, credit, older_than_s=0) == 3  # the reconciler's pass
    assert no_drift(factory, credit) == []

    again = synchronize(factory, credit, read_master_rows(tmp_path))

    assert again.corrected == []  # nothing applied twice, and Redis's totals caught up:
    assert balances(factory, credit, payer)[0][:2] == (Decimal("0.06"), 60_000)
    assert balances(factory, credit, payer)[3] == 60_000  # (balances() checks the totals)
    assert follow_earlier_in_redis(factory, credit) == 0  # already there
