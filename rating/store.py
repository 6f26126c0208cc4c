"""Rate rows in MySQL: import (all-or-nothing), export, delete-matching, and the sync of the
rate books into Redis (whole book, or the scopes a change touched)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import delete, insert, literal, select, update
from sqlalchemy.orm import Session

from ops.errors import InvalidInput
from rating import rate_limits as limits
from rating.book import RedisRateBook
from rating.money import from_micros, stored_micros, to_micros
from rating.price import Rate
from rating.select import DEFAULT, TABLES, BookRow, rate_field
from schema import AccountGroup, CallshopRate, CustomerRate, Reseller, ResellerRate
from schema.base import utcnow

MODELS = {"customer": CustomerRate, "callshop": CallshopRate, "reseller": ResellerRate}
INSERT_BATCH = 5_000
MAX_ERRORS_SHOWN = 50


@dataclass(frozen=True)
class Target:
    """Where imported rows go: a table and one scope."""

    table: str
    reseller_id: int = 0
    group_id: int = 0


@dataclass
class ImportReport:
    inserted: int = 0
    updated: int = 0
    read: int = 0  # data rows read from the file (every one, see ratefiles: XLSX dimensions)


def check_target(session: Session, target: Target) -> None:
    if target.table not in TABLES:
        raise InvalidInput(f"table {target.table!r} is not one of {', '.join(TABLES)}")
    if target.table == "reseller" and target.group_id:
        raise InvalidInput("reseller rates have no group scope: leave the group at 0")
    if target.reseller_id and session.get(Reseller, target.reseller_id) is None:
        raise InvalidInput(f"reseller {target.reseller_id} does not exist")
    if target.group_id:
        group = session.get(AccountGroup, target.group_id)
        if group is None:
            raise InvalidInput(f"group {target.group_id} does not exist")
        if group.reseller_id != target.reseller_id:
            raise InvalidInput(
                f"group {target.group_id} belongs to reseller "
                f"{group.reseller_id}, not {target.reseller_id}"
            )


def validate_row(cells: dict[str, str]) -> dict:
    """One rate row (file row, form, CLI, seed) -> column values, or InvalidInput naming the
    field. The limits (rating/rate_limits.py) keep every price exact in both engines."""
    prefix = _text(cells, "dialprefix")
    if not (
        prefix == DEFAULT
        or (limits.ASCII_DIGITS.fullmatch(prefix) and len(prefix) <= limits.MAX_PREFIX_DIGITS)
    ):
        raise InvalidInput(
            f"dialprefix {prefix!r} is not digits 0-9 (at most {limits.MAX_PREFIX_DIGITS}) "
            "or 'default'"
        )

    def whole(field: str, default: int, low: int, high: int) -> int:
        text = _text(cells, field)
        if not text:
            return default
        if not limits.ASCII_DIGITS.fullmatch(text.lstrip("-")):
            raise InvalidInput(f"{field} {text!r} is not a whole number")
        value = int(text)
        if not low <= value <= high:
            raise InvalidInput(f"{field} {value} is out of range ({low}..{high})")
        return value

    def money(field: str, required: bool, high: Decimal) -> Decimal:
        text = _text(cells, field)
        if not text and not required:
            return Decimal(0)
        if not text:
            raise InvalidInput(f"{field} is empty")
        value = from_micros(to_micros(text, field))
        if value > high:
            raise InvalidInput(f"{field} {text} is larger than {high}")
        return value

    destination = _text(cells, "destination")
    if len(destination) > limits.MAX_DESTINATION:
        raise InvalidInput(f"destination is longer than {limits.MAX_DESTINATION} characters")
    if limits.DESTINATION_FORBIDDEN.search(destination):
        raise InvalidInput("destination may not contain '|' or control characters")
    if destination.startswith(limits.FORMULA_START):
        raise InvalidInput(
            f"destination {destination!r} may not start with = + - or @ (a spreadsheet formula)"
        )
    return {
        "dialprefix": prefix,
        "numlen": whole("numlen", 0, 0, limits.MAX_NUMLEN),
        "destination": destination,
        "connectcharge": money("connectcharge", False, limits.MAX_CONNECT),
        "initblock": whole("initblock", 0, 0, limits.MAX_BLOCK_S),
        "rateinitial": money("rateinitial", True, limits.MAX_RATE),
        "billingblock": whole("billingblock", 60, 1, limits.MAX_BLOCK_S),
    }


def _text(cells: dict, field: str) -> str:
    value = cells.get(field)
    return "" if value is None else str(value).strip()


def import_rates(
    session: Session,
    target: Target,
    rows: Iterable[tuple[int, dict[str, str]]],
    replace: bool = False,
) -> ImportReport:
    """Insert (or with `replace`, update) every row, or none: any bad row raises InvalidInput
    listing each bad row with its number and reason, and nothing is written.

    The caller owns the transaction; Redis is synced by `sync_scope` after the commit."""
    check_target(session, target)
    model = MODELS[target.table]
    values: list[dict] = []
    errors: list[str] = []
    first_row: dict[tuple[str, int], int] = {}
    read = 0
    for number, cells in rows:
        read += 1
        try:
            row = validate_row(cells)
        except InvalidInput as exc:
            errors.append(f"row {number}: {exc}")
            continue
        key = (row["dialprefix"], row["numlen"])
        if key in first_row:
            errors.append(
                f"row {number}: duplicate of row {first_row[key]} "
                f"(dialprefix {key[0]}, numlen {key[1]})"
            )
            continue
        first_row[key] = number
        values.append(row)
    existing = _existing_ids(session, model, target, list(first_row))
    if existing and not replace:
        for key, rate_id in sorted(existing.items(), key=lambda kv: first_row[kv[0]]):
            errors.append(
                f"row {first_row[key]}: rate {key[0]}/{key[1]} already exists "
                f"(id {rate_id}); use replace to update it"
            )
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        raise InvalidInput(
            f"{len(errors)} bad row(s), nothing imported: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
        )
    if not values:
        raise InvalidInput("the file has no rate rows, nothing imported")

    scope = {"reseller_id": target.reseller_id}
    if target.table != "reseller":
        scope["group_id"] = target.group_id
    now = utcnow()
    new = [
        v | scope | {"created_at": now}
        for v in values
        if (v["dialprefix"], v["numlen"]) not in existing
    ]
    for start in range(0, len(new), INSERT_BATCH):  # Core executemany: no ORM per-row cost
        session.execute(insert(model.__table__), new[start : start + INSERT_BATCH])
    changed = [
        v | {"id": existing[(v["dialprefix"], v["numlen"])]}
        for v in values
        if (v["dialprefix"], v["numlen"]) in existing
    ]
    if changed:
        session.execute(update(model), changed)
    return ImportReport(inserted=len(new), updated=len(changed), read=read)


def _scope_filter(model, target: Target):
    clauses = [model.reseller_id == target.reseller_id]
    if target.table != "reseller":
        clauses.append(model.group_id == target.group_id)
    return clauses


def _existing_ids(
    session: Session, model, target: Target, keys: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """Ids of the rows of the target scope whose key is in `keys` (one streamed query)."""
    wanted = set(keys)
    query = (
        select(model.dialprefix, model.numlen, model.id)
        .where(*_scope_filter(model, target))
        .execution_options(yield_per=50_000)
    )
    return {(p, n): i for p, n, i in session.execute(query) if (p, n) in wanted}


def book_rows(
    session: Session,
    table: str | None = None,
    reseller_id: int | None = None,
    group_id: int | None = None,
) -> Iterator[BookRow]:
    """Rate rows as the engines see them (micro-units), streamed as plain column tuples."""
    for name in [table] if table else TABLES:
        model = MODELS[name]
        group_col = model.group_id if name != "reseller" else literal(0)
        query = (
            select(
                model.id,
                model.dialprefix,
                model.numlen,
                model.connectcharge,
                model.initblock,
                model.rateinitial,
                model.billingblock,
                model.destination,
                model.reseller_id,
                group_col,
            )
            .order_by(model.id)
            .execution_options(yield_per=20_000)
        )
        if reseller_id is not None:
            query = query.where(model.reseller_id == reseller_id)
        if group_id is not None and name != "reseller":
            query = query.where(model.group_id == group_id)
        for rid, prefix, numlen, connect, init, per_min, block, dest, r, g in session.execute(
            query
        ):
            yield _book_row(name, rid, prefix, numlen, connect, init, per_min, block, dest, r, g)


def _book_row(
    table: str,
    rid: int,
    prefix: str,
    numlen: int,
    connect: Decimal,
    init: int,
    per_min: Decimal,
    block: int,
    dest: str,
    r: int,
    g: int,
) -> BookRow:
    rate = Rate(rid, stored_micros(connect), init, stored_micros(per_min), block, dest)
    return BookRow(table, prefix, numlen, r, g, rate)


# Every writer of the Redis book holds the tag's lock (RedisRateBook.lock) while it reads
# MySQL and writes Redis, and reads MySQL only after its own change is committed: the last
# writer to take the lock then reads a state that includes every earlier commit, so Redis ends
# equal to MySQL whatever the interleaving. Pass a session that has no transaction open yet
# (just committed, or new) so that its snapshot is taken inside the lock.


def sync_all(session: Session, book: RedisRateBook) -> int:
    """Replace the whole Redis book by what MySQL holds, tag by tag. Returns the row count."""
    tags = {int(t) for t in book.client.smembers(book.keys.rate_tags())}
    for model in MODELS.values():
        tags.update(session.scalars(select(model.reseller_id).distinct()))
    count = 0
    for reseller_id in sorted(tags):
        with book.lock(reseller_id):
            count += book.replace_tag(reseller_id, book_rows(session, reseller_id=reseller_id))
    return count


def sync_scope(session: Session, book: RedisRateBook, target: Target) -> int:
    """Replace one scope's hash in Redis by what MySQL holds for it."""
    with book.lock(target.reseller_id):
        rows = book_rows(session, target.table, target.reseller_id, target.group_id)
        return book.replace_scope(target.table, target.reseller_id, target.group_id, rows)


@dataclass(frozen=True)
class RateKey:
    """Where one rate row lives in Redis: its table, scope and `dialprefix|numlen`."""

    table: str
    reseller_id: int
    group_id: int
    dialprefix: str
    numlen: int


def key_of(table: str, row) -> RateKey:
    return RateKey(
        table, row.reseller_id or 0, getattr(row, "group_id", 0) or 0, row.dialprefix, row.numlen
    )


def refresh_keys(session: Session, book: RedisRateBook, keys: Iterable[RateKey]) -> None:
    """Make these rate fields in Redis what MySQL holds now (set, changed or gone): a single-row
    change, without rebuilding its scope. Several rows on one key: the highest id wins, as in
    a whole-scope sync."""
    by_tag: dict[int, set[RateKey]] = {}
    for key in keys:
        by_tag.setdefault(key.reseller_id, set()).add(key)
    for reseller_id, wanted in by_tag.items():
        with book.lock(reseller_id):
            found: dict[RateKey, BookRow] = {}
            for key in wanted:
                model = MODELS[key.table]
                clauses = [
                    model.dialprefix == key.dialprefix,
                    model.numlen == key.numlen,
                    *_scope_filter(model, Target(key.table, key.reseller_id, key.group_id)),
                ]
                row = session.scalar(select(model).where(*clauses).order_by(model.id.desc()))
                if row is not None:
                    found[key] = _as_book_row(key.table, row)
            per_scope: dict[tuple[str, int], dict] = {}
            for key in wanted:
                field = rate_field(key.dialprefix, key.numlen)
                hit = found.get(key)
                per_scope.setdefault((key.table, key.group_id), {})[field] = hit and hit.rate
            for (table, group_id), fields in per_scope.items():
                book.set_fields(table, reseller_id, group_id, fields)


def delete_matching(
    session: Session,
    table: str,
    reseller_id: int | None = None,
    group_id: int | None = None,
    prefix: str | None = None,
    confirm_all: bool = False,
) -> tuple[int, set[Target]]:
    """Delete the rows matching every given filter. An empty filter needs `confirm_all`.
    Returns the count and the scopes touched (to sync)."""
    if table not in TABLES:
        raise InvalidInput(f"table {table!r} is not one of {', '.join(TABLES)}")
    if reseller_id is None and group_id is None and not prefix and not confirm_all:
        raise InvalidInput("no filter given: this would delete the whole table; confirm with --all")
    model = MODELS[table]
    clauses = []
    if reseller_id is not None:
        clauses.append(model.reseller_id == reseller_id)
    if group_id is not None and table != "reseller":
        clauses.append(model.group_id == group_id)
    if prefix:
        if not (prefix.isdigit() or prefix == DEFAULT):
            raise InvalidInput(f"prefix {prefix!r} is not digits or 'default'")
        clauses.append(model.dialprefix.startswith(prefix, autoescape=True))
    group_col = model.group_id if table != "reseller" else None
    scope_cols = [model.reseller_id] + ([group_col] if group_col is not None else [])
    touched = {
        Target(table, r[0], r[1] if len(r) > 1 else 0)
        for r in session.execute(select(*scope_cols).where(*clauses).distinct())
    }
    result = session.execute(delete(model).where(*clauses))
    return result.rowcount, touched


def save_rate(
    session: Session,
    book: RedisRateBook,
    target: Target,
    cells: dict[str, str],
    rate_id: int | None = None,
) -> int:
    """Create (rate_id None) or change one rate row, then apply just that row to Redis.

    The row is validated like an imported one; a key taken by another row is refused. The
    caller's transaction is flushed, not committed: Redis is updated after the flush, so call
    this inside the transaction that commits right after (the back office's save)."""
    check_target(session, target)
    model = MODELS[target.table]
    values = validate_row(cells)
    taken = _existing_ids(session, model, target, [(values["dialprefix"], values["numlen"])])
    other = next(iter(taken.values()), None)
    if other is not None and other != rate_id:
        raise InvalidInput(
            f"rate {values['dialprefix']}/{values['numlen']} already exists (id {other})"
        )
    previous: RateKey | None = None
    if rate_id is None:
        row = model(
            **values,
            reseller_id=target.reseller_id,
            **({"group_id": target.group_id} if target.table != "reseller" else {}),
        )
        session.add(row)
    else:
        row = session.get(model, rate_id)
        if row is None:
            raise InvalidInput(f"{target.table} rate {rate_id} does not exist")
        previous = key_of(target.table, row)
        for key, value in values.items():
            setattr(row, key, value)
        row.reseller_id = target.reseller_id
        if target.table != "reseller":
            row.group_id = target.group_id
    session.flush()
    refresh_keys(session, book, [key_of(target.table, row), *([previous] if previous else [])])
    return row.id


def delete_rate(session: Session, book: RedisRateBook, table: str, rate_id: int) -> None:
    """Delete one rate row and remove just that row from Redis."""
    row = session.get(MODELS[table], rate_id)
    if row is None:
        raise InvalidInput(f"{table} rate {rate_id} does not exist")
    key = key_of(table, row)
    session.delete(row)
    session.flush()
    refresh_keys(session, book, [key])


def _as_book_row(table: str, r) -> BookRow:
    rate = Rate(
        r.id,
        to_micros(r.connectcharge),
        r.initblock,
        to_micros(r.rateinitial),
        r.billingblock,
        r.destination,
    )
    return BookRow(table, r.dialprefix, r.numlen, r.reseller_id, getattr(r, "group_id", 0), rate)
