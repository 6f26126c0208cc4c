"""Asterisk's own CDRs, read from its CDR store: cdr_csv's Master.csv or the `cdr` table.

Two stores, one record (`AsteriskCdr`):
- **Master.csv** (cdr_csv, `loguniqueid = yes`): one line per CDR, columns in the order
  cdr_csv writes them: accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
  lastdata, start, answer, end, duration, billsec, disposition, amaflags, uniqueid, userfield
  (`newcdrcolumns = yes` appends peeraccount, linkedid, sequence). Times are local-time
  strings (`usegmtime = no`), `answer` is empty for unanswered calls.
- **the `cdr` table** that cdr_mysql / cdr_adaptive_odbc write (MySQL/MariaDB): calldate,
  clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata, duration, billsec,
  disposition, amaflags, accountcode, uniqueid, userfield. It keeps only the start
  (`calldate`): the answer is start + duration - billsec, the end start + duration. Tables
  with `answer` / `end` columns (Asterisk's alembic schema) are read with them.
A line or row that cannot be read is reported with its line number and why; it is never
guessed at.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from ops.errors import InvalidInput
from schema.calls import DISPOSITIONS

CSV_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)
NEW_CDR_COLUMNS = ("peeraccount", "linkedid", "sequence")


@dataclass(frozen=True)
class AsteriskCdr:
    """One CDR as Asterisk wrote it; times naive UTC (converted from Asterisk's zone)."""

    uniqueid: str
    channel: str
    dstchannel: str
    src: str
    dst: str
    lastapp: str
    start: datetime
    answer: datetime | None
    end: datetime
    duration: int
    billsec: int
    disposition: str
    where: str  # "Master.csv line 12" / "cdr row 3": for messages


@dataclass
class CdrSource:
    """What was read: the records, a message per line or row that was not, and how many
    good rows were left out because they are of no call asked for."""

    records: list[AsteriskCdr]
    errors: list[str]
    other_rows: int = 0


def read_master_csv(
    path: Path, zone: str = "UTC", uniqueids: Iterable[str] | None = None
) -> CdrSource:
    """Every line of Master.csv, read one by one (the file grows for years); with
    `uniqueids`, only the records of those channels are kept."""
    tz = _zone(zone)
    wanted = None if uniqueids is None else set(uniqueids)
    source = CdrSource([], [])
    try:
        with path.open(encoding="utf-8", errors="strict", newline="") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    _read_line(source, line, f"{path.name} line {number}", tz, wanted)
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path.name} could not be read: {exc}") from None
    return source


def _read_line(source: CdrSource, line: str, where: str, tz: ZoneInfo, wanted) -> None:
    # One physical line at a time: a broken quote spoils its own line, not the next ones.
    try:
        cells = next(csv.reader([line.rstrip("\r\n")], strict=True))
        record = _from_csv(cells, where, tz)
    except (csv.Error, ValueError) as exc:
        source.errors.append(f"{where}: {exc}")
        return
    if wanted is None or record.uniqueid in wanted:
        source.records.append(record)
    else:
        source.other_rows += 1


def _from_csv(cells: list[str], where: str, tz: ZoneInfo) -> AsteriskCdr:
    allowed = (len(CSV_COLUMNS), len(CSV_COLUMNS) + len(NEW_CDR_COLUMNS))
    if len(cells) not in allowed:
        raise ValueError(
            f"{len(cells)} columns, expected {allowed[0]} (cdr_csv with loguniqueid and "
            f"loguserfield) or {allowed[1]} (with newcdrcolumns)"
        )
    row = dict(zip(CSV_COLUMNS, cells, strict=False))
    return _record(
        row,
        where,
        start=_time(row["start"], "start", tz),
        answer=_time(row["answer"], "answer", tz) if row["answer"].strip() else None,
        end=_time(row["end"], "end", tz),
    )


def read_cdr_table(url: str, uniqueids: Iterable[str], table: str = "cdr", zone: str = "UTC"):
    """The rows of Asterisk's CDR table whose uniqueid is one of `uniqueids`."""
    tz = _zone(zone)
    wanted = sorted(set(uniqueids))
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError) as exc:
        raise InvalidInput(f"Asterisk CDR database URL is not usable: {exc}") from None
    records, errors = [], []
    try:
        cdr = Table(table, MetaData(), autoload_with=engine)  # quoted by SQLAlchemy
        missing = {"calldate", "uniqueid", "duration", "billsec"} - set(cdr.c.keys())
        if missing and not {"start", "uniqueid"} <= set(cdr.c.keys()):
            raise InvalidInput(f"table {table} is not an Asterisk CDR table: no {sorted(missing)}")
        with engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = select(cdr).where(cdr.c.uniqueid.in_(wanted[start : start + 500]))
                for row in conn.execute(query).mappings():
                    where = f"{table} row uniqueid {row.get('uniqueid')!r}"
                    try:
                        records.append(_from_table(dict(row), where, tz))
                    except ValueError as exc:
                        errors.append(f"{where}: {exc}")
    except NoSuchTableError:
        raise InvalidInput(f"the Asterisk CDR database has no table {table!r}") from None
    except SQLAlchemyError as exc:
        raise InvalidInput(f"the Asterisk CDR database could not be read: {exc}") from None
    finally:
        engine.dispose()
    return CdrSource(records, errors)


def _from_table(row: dict, where: str, tz: ZoneInfo) -> AsteriskCdr:
    text = {k: "" if v is None else str(v) for k, v in row.items()}
    duration, billsec = (
        _whole(text.get("duration", ""), "duration"),
        _whole(text.get("billsec", ""), "billsec"),
    )
    start = _db_time(row.get("calldate", row.get("start")), "calldate", tz)
    if row.get("end") is not None:
        end = _db_time(row["end"], "end", tz)
        answer = _db_time(row["answer"], "answer", tz) if row.get("answer") else None
    else:
        end = start + timedelta(seconds=duration)
        answer = end - timedelta(seconds=billsec) if billsec or _answered(text) else None
    return _record(text, where, start=start, answer=answer, end=end)


def _answered(text: dict) -> bool:
    return text.get("disposition", "").strip().upper() == "ANSWERED"


def _record(row: dict, where: str, start, answer, end) -> AsteriskCdr:
    uniqueid = row.get("uniqueid", "").strip()
    if not uniqueid:
        raise ValueError("no uniqueid (cdr_csv needs `loguniqueid = yes`)")
    disposition = row.get("disposition", "").strip().upper()
    if disposition not in DISPOSITIONS:
        raise ValueError(f"disposition {disposition!r} is not one of {', '.join(DISPOSITIONS)}")
    duration = _whole(row.get("duration", ""), "duration")
    billsec = _whole(row.get("billsec", ""), "billsec")
    if billsec > duration:
        raise ValueError(f"billsec {billsec} is longer than duration {duration}")
    return AsteriskCdr(
        uniqueid=uniqueid,
        channel=row.get("channel", ""),
        dstchannel=row.get("dstchannel", ""),
        src=row.get("src", ""),
        dst=row.get("dst", ""),
        lastapp=row.get("lastapp", ""),
        start=start,
        answer=answer,
        end=end,
        duration=duration,
        billsec=billsec,
        disposition=disposition,
        where=where,
    )


def _whole(raw: str, what: str) -> int:
    raw = raw.strip()
    # The table may store them as FLOAT ("6.0"); a fraction is not Asterisk's.
    if raw.endswith(".0"):
        raw = raw[:-2]
    if not raw.isdigit() or len(raw) > 9:
        raise ValueError(f"{what} {raw!r} is not a whole number of seconds")
    return int(raw)


def _time(raw: str, what: str, tz: ZoneInfo) -> datetime:
    raw = raw.strip()
    try:
        if len(raw) != len("YYYY-MM-DD HH:MM:SS") or raw[10] != " ":
            raise ValueError
        local = datetime.fromisoformat(raw)  # C-fast; the shape is checked above
    except ValueError:
        raise ValueError(f"{what} {raw!r} is not a time (YYYY-MM-DD HH:MM:SS)") from None
    return _utc(local, tz)


def _db_time(value, what: str, tz: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return _utc(value.replace(microsecond=0), tz)
    return _time("" if value is None else str(value), what, tz)


def _utc(local: datetime, tz: ZoneInfo) -> datetime:
    if tz.key == "UTC":
        return local
    return local.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        raise InvalidInput(f"time zone {name!r} is not known (e.g. UTC, Europe/Berlin)") from None


def write_master_csv(rows: Iterable[dict]) -> str:
    """Master.csv lines as cdr_csv writes them (every text field quoted, the two numbers
    not): for tests and for sample files."""
    lines = []
    for row in rows:
        cells = []
        for column in CSV_COLUMNS:
            value = str(row.get(column, ""))
            if column in ("duration", "billsec"):
                cells.append(value)
            else:
                cells.append('"' + value.replace('"', '""') + '"')
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
