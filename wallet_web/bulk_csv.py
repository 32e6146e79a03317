"""The CSV file support staff upload to grant credits to many players at once (compensation
after an outage, say), read into the rows a grant can post and the problems staff can fix.

Pure: no database, no Flask. A file that cannot be read at all raises InvalidUpload; a wrong
row is left out of `rows` and reported in `problems`. A line number is the row a spreadsheet
shows: the header is line 1, a blank line counts, a quoted value spanning lines is one line.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import errors, inputs
from .limits import BALANCE_CEILING, BIGINT_MAX, BULK_FILE_MAX_BYTES, BULK_MAX_ROWS

MAX_BYTES = BULK_FILE_MAX_BYTES
MAX_ROWS = BULK_MAX_ROWS
MAX_REASON = 200
USER_COLUMNS = ("user_id", "external_id", "username")
COLUMNS = USER_COLUMNS + ("asset", "amount", "reason")
EXPECTED = "one of user_id, external_id or username, then asset, amount and optionally reason"
SAVE_AS_UTF8 = "save it from the spreadsheet as 'CSV UTF-8'"

WORKBOOKS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")  # .xlsx and .ods are zip files; .xls is OLE
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
FIRST_LINE = re.compile(r"\s*([^\r\n]*)")
ASSET_CODE = re.compile(inputs.ASSET_CODE)
# What a spreadsheet runs as a formula when the file is opened again (CSV injection).
FORMULA_START = re.compile(f" *[{re.escape(inputs.FORMULA_STARTS)}\t\r]")
# C0 and C1 controls, and the bidi overrides that make text display as something else.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
Records = Iterator[tuple[int, list[str]]]  # (line, cells) of the lines that are not blank
CSV_ERRORS = {  # csv's own words -> what to do about them
    "unexpected end of data": "a double quote opened here is never closed",
    "expected after": "a quoted value has text after its closing quote "
                      "(inside quotes, write a double quote as two: \"\")",
    "field larger than field limit": "a value is far too long",
}


@dataclass(frozen=True, slots=True)  # slots: a file holds up to MAX_ROWS of them
class Row:
    line: int
    user: str
    asset: str
    amount: int
    reason: str


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


@dataclass(frozen=True)
class ParsedFile:
    sha256: str
    user_column: str
    rows: tuple[Row, ...]
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class _Layout:
    """Where each column is: positions in a row of `width` cells (reason may be absent)."""

    user_column: str
    user: int
    asset: int
    amount: int
    reason: int | None
    width: int


def parse(data: bytes) -> ParsedFile:
    text = _decode(data)
    records = _records(text, _delimiter(text))
    header_line, header = next(records, (0, None))
    layout = _layout(header, header_line)
    rows, problems = _read_rows(records, layout)
    if not rows and not problems:
        raise errors.InvalidUpload("the file has a header but no rows below it", line=header_line)
    digest = hashlib.sha256(data).hexdigest()
    return ParsedFile(digest, layout.user_column, tuple(rows), tuple(problems))


# ---------------------------------------------------------------- the whole file


def _decode(data: bytes) -> str:
    if not data:
        raise errors.InvalidUpload("the file is empty")
    if len(data) > MAX_BYTES:
        raise errors.InvalidUpload(
            f"the file is larger than {MAX_BYTES // 2**20} MB: split it into several files",
            size=len(data), max_bytes=MAX_BYTES)
    _refuse_other_formats(data)
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = _line_of(body, error.start)
        raise errors.InvalidUpload(
            f"the file is not UTF-8 text (line {line} holds a byte that is not): {SAVE_AS_UTF8}",
            line=line) from None


def _refuse_other_formats(data: bytes) -> None:
    if data.startswith(WORKBOOKS):
        raise errors.InvalidUpload(
            "this looks like an Excel workbook, not a CSV file: export it as CSV "
            "(File > Save As > 'CSV UTF-8')")
    if data.startswith(UTF16_BOMS) or _looks_like_utf16(data):
        raise errors.InvalidUpload(f"the file is UTF-16 text ('Unicode Text'): {SAVE_AS_UTF8}")
    nul = data.find(b"\x00")
    if nul >= 0:  # Python's csv reads NUL since 3.11; a text file never holds one
        line = _line_of(data, nul)
        raise errors.InvalidUpload(
            f"line {line} holds a NUL byte, which a CSV file never does: {SAVE_AS_UTF8}", line=line)


def _looks_like_utf16(data: bytes) -> bool:
    """Latin text in UTF-16 without a byte order mark: every other byte is NUL."""
    start = data[:64]
    return any(half.count(0) * 2 > len(half) for half in (start[0::2], start[1::2]))


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _delimiter(text: str) -> str:
    """European Excel separates with semicolons (the comma is its decimal mark)."""
    header = FIRST_LINE.match(text).group(1)
    return ";" if ";" in header and "," not in header else ","


def _records(text: str, delimiter: str) -> Records:
    """A row of empty cells (",,,", as Excel writes a formatted empty row) is blank too."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 0
    try:
        for line, cells in enumerate(reader, start=1):
            if "".join(cells).strip():
                yield line, cells
    except csv.Error as error:
        raise _unreadable(line + 1, str(error)) from None


def _unreadable(line: int, reason: str) -> errors.InvalidUpload:
    said = next((said for words, said in CSV_ERRORS.items() if words in reason), reason)
    return errors.InvalidUpload(f"line {line} cannot be read as CSV: {said}", line=line)


# ---------------------------------------------------------------- the header


def _layout(header: list[str] | None, line: int) -> _Layout:
    if header is None:
        raise errors.InvalidUpload(
            f"the file has no header line: the first line names the columns, {EXPECTED}")
    names = [cell.strip().lower() for cell in header]
    _check_names(names, line)
    user_column = _user_column(names, line)
    reason = names.index("reason") if "reason" in names else None
    return _Layout(user_column, names.index(user_column), names.index("asset"),
                   names.index("amount"), reason, len(names))


def _check_names(names: list[str], line: int) -> None:
    if not set(names) & set(COLUMNS):
        found = ", ".join(_quote(name) for name in names[:6])
        raise errors.InvalidUpload(
            f"the first line must name the columns, separated by commas ({EXPECTED}); "
            f"it reads {found}", line=line)
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        what = f"unknown column {_quote(unknown[0])}" if unknown[0] else "a column without a name"
        raise errors.InvalidUpload(f"{what}: the columns are {EXPECTED}", line=line)
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise errors.InvalidUpload(f"the column {repeated[0]} appears twice: keep one", line=line)
    missing = [name for name in ("asset", "amount") if name not in names]
    if missing:
        raise errors.InvalidUpload(
            f"the column {missing[0]} is missing: the columns are {EXPECTED}", line=line)


def _user_column(names: list[str], line: int) -> str:
    users = [name for name in names if name in USER_COLUMNS]
    if not users:
        raise errors.InvalidUpload(
            "no column says who gets the credits: add one of user_id, external_id or username",
            line=line)
    if len(users) > 1:
        raise errors.InvalidUpload(
            f"name the player in one column only, the file has {' and '.join(users)}", line=line)
    return users[0]


# ---------------------------------------------------------------- the rows


def _read_rows(records: Records, layout: _Layout) -> tuple[list[Row], list[Problem]]:
    read, rows, problems, first_lines = _RowReader(layout).read, [], [], {}
    for count, (line, cells) in enumerate(records, start=1):
        if count > MAX_ROWS:
            raise errors.InvalidUpload(
                f"the file has more than {MAX_ROWS:,} rows: split it into several files",
                max_rows=MAX_ROWS)
        row, messages = read(line, cells)
        if row is not None:
            same = (row.user, row.asset, row.amount, row.reason)
            first = first_lines.setdefault(same, line)
            if first != line:
                row, messages = None, [_repeats(first)]
        if row is not None:
            rows.append(row)
        else:
            problems.extend(Problem(line, message) for message in messages)
    return rows, problems


class _RowReader:
    """Reads the rows of one file. Assets, amounts and reasons repeat from row to row, so each
    distinct cell is checked once (a cache per file, so that no upload stays in memory)."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        named = functools.partial(_user_name, column=layout.user_column)
        self.user = _user_id if layout.user_column == "user_id" else named
        self.asset = functools.cache(_asset)
        self.amount = functools.cache(_amount)
        self.reason = functools.cache(_reason)

    def read(self, line: int, cells: list[str]) -> tuple[Row | None, Sequence[str]]:
        at = self.layout
        if len(cells) != at.width:
            return None, [_wrong_width(len(cells), at.width)]
        user, user_problem = self.user(cells[at.user])
        asset, asset_problem = self.asset(cells[at.asset])
        amount, amount_problem = self.amount(cells[at.amount])
        reason, reason_problem = ("", None) if at.reason is None else self.reason(cells[at.reason])
        if user_problem or asset_problem or amount_problem or reason_problem:
            problems = (user_problem, asset_problem, amount_problem, reason_problem)
            return None, [problem for problem in problems if problem]
        return Row(line, user, asset, amount, reason), ()


def _wrong_width(values: int, columns: int) -> str:
    return (f"this row has {values} values but the header names {columns} columns: "
            "a value that holds the separator must be in double quotes")


def _repeats(first: int) -> str:
    return (f"repeats line {first} (same player, asset, amount and reason): delete one, "
            "or give each its own reason if both are meant")


def _user_id(cell: str) -> tuple[str, str | None]:
    """A valid id is given as the number it is: 0042 is user 42."""
    user = cell.strip()
    if _is_id(user):
        return user.lstrip("0"), None
    if not user:
        return user, _empty_user("user_id")
    return user, _unsafe_text(cell, "user_id") or \
        f"user_id must be a whole number from 1 to {BIGINT_MAX} (not {_quote(user)})"


def _user_name(cell: str, column: str) -> tuple[str, str | None]:
    user = cell.strip()
    return user, (_unsafe_text(cell, column) if user else _empty_user(column))


def _empty_user(column: str) -> str:
    return f"{column} is empty: say which player gets the credits"


def _is_id(text: str) -> bool:
    number = _whole_number(text)
    return number is not None and 0 < number <= BIGINT_MAX


def _whole_number(text: str) -> int | None:
    """The value ASCII digits spell, else None (str.isdigit alone also takes '²' and '١٢').
    Past 19 significant digits just BIGINT_MAX + 1: too large anyway, and int() refuses more
    than 4300 digits."""
    if not (text.isdigit() and text.isascii()):
        return None
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) <= 19 else BIGINT_MAX + 1


def _asset(cell: str) -> tuple[str, str | None]:
    asset = cell.strip()
    if not asset:
        return asset, "asset is empty: write the asset code, like GOLD"
    if FORMULA_START.match(cell):
        return asset, _formula("asset", cell)
    if ASSET_CODE.fullmatch(asset):
        return asset, None
    if ASSET_CODE.fullmatch(asset.upper()):
        return asset, f"asset codes are written in capitals: {asset.upper()}, not {_quote(asset)}"
    return asset, ("asset must be an asset code like GOLD: a capital letter, then at most 15 "
                   f"capitals, digits or _ (not {_quote(asset)})")


def _amount(cell: str) -> tuple[int, str | None]:
    """No formula check of its own: the amount is digits only, so '=1+1' fails here too, and
    '-5' reads better as a wrong number than as a formula."""
    text = cell.strip()
    if not text:
        return 0, "amount is empty: write a whole number like 250"
    amount = _whole_number(text)
    if amount is None:
        return 0, ("amount must be a whole number of the asset's smallest unit, like 250 "
                   f"(not {_quote(text)})")
    if amount == 0:
        return 0, "amount is 0: a grant gives at least 1"
    if amount > BALANCE_CEILING:
        return 0, f"amount is too large: no wallet may hold more than {BALANCE_CEILING:,}"
    return amount, None


def _reason(cell: str) -> tuple[str, str | None]:
    reason = cell.strip()
    if not reason:
        return reason, None
    problem = _unsafe_text(cell, "reason")
    if not problem and len(reason) > MAX_REASON:
        problem = f"reason is {len(reason)} characters long: at most {MAX_REASON}"
    return reason, problem


def _unsafe_text(cell: str, column: str) -> str | None:
    if FORMULA_START.match(cell):
        return _formula(column, cell)
    if not cell.isprintable() and CONTROL.search(cell.strip()):
        return f"{column} holds a control character (a tab, a line break or the like): remove it"
    return None


def _formula(column: str, cell: str) -> str:
    return (f"{column} looks like a spreadsheet formula ({_quote(cell.strip(' '))}): "
            "a value may not start with = + - @ or a tab")


def _quote(text: str) -> str:
    """A cell as a message shows it: short, with control characters spelled out."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    return "'" + CONTROL.sub(lambda match: f"\\u{ord(match[0]):04x}", shown) + "'"
