"""Reading rate files (CSV, XLS, XLSX) into rows of text cells, with a column mapping like
the original import page: which file column holds dialprefix, numlen, destination, ..."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path

from ops.errors import InvalidInput

FIELDS = (
    "dialprefix",
    "numlen",
    "destination",
    "connectcharge",
    "initblock",
    "rateinitial",
    "billingblock",
)
REQUIRED = ("dialprefix", "rateinitial")
# An XLSX is a zip: its parts may unpack to at most this much (a zip bomb of a few MB
# unpacks to gigabytes; a sheet of a million rate rows to about 150 MB).
XLSX_MAX_UNZIPPED_BYTES = 512 * 1024 * 1024


def read_cells(
    path: Path, delimiter: str = ",", max_rows: int | None = None
) -> Iterator[list[str]]:
    """Every row of the first sheet (or the CSV) as a list of text cells; InvalidInput past
    `max_rows` rows (the back office's cap, ASTERBILL_IMPORT_MAX_ROWS)."""
    for number, row in enumerate(_read_cells(path, delimiter), start=1):
        if max_rows is not None and number > max_rows:
            raise InvalidInput(
                f"{path.name} has more than {max_rows} rows (the limit of "
                "ASTERBILL_IMPORT_MAX_ROWS): split it, or import it with `asterbill rates import`"
            )
        yield row


def _read_cells(path: Path, delimiter: str) -> Iterator[list[str]]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            with open(path, newline="", encoding="utf-8-sig") as f:
                yield from csv.reader(f, delimiter=delimiter)
        elif suffix == ".xlsx":
            yield from _xlsx(path)
        elif suffix == ".xls":
            yield from _xls(path)
        else:
            raise InvalidInput(f"{path.name}: unknown file type (use .csv, .xls or .xlsx)")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInput(f"{path.name} could not be read: {exc}") from None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # Spreadsheets store numbers as doubles: take the shortest text that reads back the
        # same (0.1 stays "0.1"), and whole numbers without ".0" (a prefix 49.0 -> "49").
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def _xlsx(path: Path) -> Iterator[list[str]]:
    import zipfile

    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        _check_unzipped_size(path)
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise InvalidInput(f"{path.name} is not a readable XLSX file: {exc}") from None
    try:
        sheet = book.worksheets[0]
        # read-only mode trusts the sheet's <dimension> tag; a stale one (A1:C3 for 10 rows)
        # would silently cut the sheet short: read every row there is instead
        sheet.reset_dimensions()
        for row in sheet.iter_rows(values_only=True):
            yield [_cell(v) for v in row]
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as exc:
        raise InvalidInput(f"{path.name} is not a readable XLSX file: {exc}") from None
    finally:
        book.close()


def _check_unzipped_size(path: Path) -> None:
    """Refuse a zip bomb before opening it: by the sizes the archive declares (zipfile never
    unpacks more than the declared size of a part)."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        total = sum(part.file_size for part in archive.infolist())
        if total > XLSX_MAX_UNZIPPED_BYTES:
            raise InvalidInput(
                f"{path.name} unpacks to {total} bytes, more than {XLSX_MAX_UNZIPPED_BYTES}"
            )


def _xls(path: Path) -> Iterator[list[str]]:
    import xlrd

    try:
        book = xlrd.open_workbook(str(path), logfile=io.StringIO())  # its warnings: not ours
        sheet = book.sheet_by_index(0)
    except Exception as exc:
        # xlrd raises many kinds (CompDocError, struct errors, KeyError...) on a damaged
        # upload: every one of them means "not a readable file"
        raise InvalidInput(f"{path.name} is not a readable XLS file: {exc}") from None
    for r in range(sheet.nrows):
        yield [_cell(v) for v in sheet.row_values(r)]


def parse_mapping(pairs: Mapping[str, str]) -> dict[str, str]:
    """Validate `field -> column` (a header name, or a 1-based column number)."""
    unknown = [f for f in pairs if f not in FIELDS]
    if unknown:
        raise InvalidInput(
            f"unknown field(s) in the mapping: {', '.join(unknown)} (fields: {', '.join(FIELDS)})"
        )
    return dict(pairs)


def mapped_rows(
    cells: Iterator[list[str]], mapping: Mapping[str, str], header: bool = True
) -> Iterator[tuple[int, dict[str, str]]]:
    """(file row number, {field: text}) for every non-empty row, by the mapping.

    Fields not in the mapping are taken from a header column of the same name, if any."""
    first = next(cells, None)
    if first is None:
        return
    names = [c.strip().lower() for c in first] if header else []
    positions: dict[str, int] = {}
    for field in FIELDS:
        column = mapping.get(field)
        if column is None:
            if field in names:
                positions[field] = names.index(field)
            continue
        if column.isdigit() and int(column) >= 1:
            positions[field] = int(column) - 1
        elif column.strip().lower() in names:
            positions[field] = names.index(column.strip().lower())
        else:
            raise InvalidInput(f"mapping {field}={column}: no such column in the file")
    missing = [f for f in REQUIRED if f not in positions]
    if missing:
        raise InvalidInput(f"no column for {', '.join(missing)}: map it, e.g. --map {missing[0]}=2")
    rows = cells if header else _chain(first, cells)
    for number, row in enumerate(rows, start=2 if header else 1):
        if not any(c.strip() for c in row):
            continue
        yield number, {f: (row[i].strip() if i < len(row) else "") for f, i in positions.items()}


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest
