"""Verify a ledger export offline: `python -m wallet_web.verify_export export.csv manifest.json`.

Standard library only, no database, no network: an auditor can run this one file with any
Python 3.8+ (`python3 verify_export.py export.csv manifest.json`). It recomputes every entry's
hash from the rows' cells, checks the chain from the manifest's hash before the first entry to
its hash after the last, the row and entry counts and the file's sha256; exit 0 with a one-line
summary, 1 naming the first problem (CSV line, seq, transaction), 2 when a file is unreadable.

This module is also where the canonical form is defined: the sealer (chain.py) hashes the
bytes these functions return, so the two cannot drift. docs/audit.md describes it byte by byte.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field

GENESIS = "0" * 64
FORMAT = "wallet-ledger-export-v1"
LEDGER_V1 = "wallet-ledger-v1"
AUDIT_V1 = "wallet-audit-v1"
CONTROL_FIELDS = ("reason_code", "ticket", "checker")
HEADER = ("transaction_id", "created_at", "kind", "reference_id", "account_id", "account",
          "user_id", "username", "asset", "amount", "balance_after", "description", "actor",
          *CONTROL_FIELDS, "hold_id", "chain_seq", "chain_prev_hash", "chain_hash")
# The sealed cells, in canonical order: those of the transaction (the same on each of its
# rows), those of a posting. The others (account, username, hold_id) are labels, not sealed.
TRANSACTION_CELLS = ("transaction_id", "created_at", "kind", "reference_id", "description",
                     "actor", *CONTROL_FIELDS)
POSTING_CELLS = ("account_id", "user_id", "asset", "amount", "balance_after")
CHAIN_CELLS = ("chain_seq", "chain_prev_hash", "chain_hash")
INTEGER_CELLS = ("transaction_id", "account_id", "user_id", "amount")
FORMULA_QUOTE = "'"


# ---------------------------------------------------------------- the canonical form


def canonical(value: list) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def ledger_entry_bytes(seq: int, transaction: tuple, postings: list[tuple]) -> bytes:
    """transaction: (id, created_at, kind, reference_id, description, actor, reason_code,
    ticket, checker); postings in posting id order: (account_id, user_id, asset, amount,
    balance_after or None)."""
    return canonical([LEDGER_V1, seq, *transaction, [list(leg) for leg in postings]])


def audit_entry_bytes(seq: int, event: tuple) -> bytes:
    """event: (id, created_at, action, outcome, actor, operator_id, api_key_id, address,
    request_id, object_type, object_id, details as the audit CSV writes it)."""
    return canonical([AUDIT_V1, seq, *event])


def chain_hash(previous: str, data: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + data).hexdigest()


def unneutralise(cell: str) -> str:
    """The text a CSV cell was written from: the export prefixes a quote to any text that a
    spreadsheet could read as a formula, and to text that starts with a quote itself."""
    return cell[1:] if cell.startswith(FORMULA_QUOTE) else cell


# ---------------------------------------------------------------- reading an export


class Problem(Exception):
    """The first thing wrong with an export, as a sentence."""


@dataclass
class Entry:
    """The rows of one chain entry: consecutive rows with the same chain_seq."""

    line: int
    cells: dict
    postings: list = field(default_factory=list)
    last_line: int = 0

    @property
    def seq(self) -> int:
        return int(self.cells["chain_seq"])

    @property
    def lines(self) -> str:
        if self.last_line == self.line:
            return f"line {self.line}"
        return f"lines {self.line}-{self.last_line}"

    @property
    def where(self) -> str:
        return (f"{self.lines} (seq {self.cells['chain_seq']}, "
                f"transaction {self.cells['transaction_id']})")

    def recomputed_hash(self) -> str:
        transaction = tuple(_value(name, self.cells[name]) for name in TRANSACTION_CELLS)
        data = ledger_entry_bytes(self.seq, transaction, self.postings)
        return chain_hash(self.cells["chain_prev_hash"], data)


def _value(name: str, cell: str):
    if name in INTEGER_CELLS:
        return int(cell)
    return cell if name == "created_at" else unneutralise(cell)


def _posting(row: dict) -> tuple:
    account_id, user_id, asset, amount, balance = (row[name] for name in POSTING_CELLS)
    return (int(account_id), int(user_id), asset, int(amount),
            None if balance == "" else int(balance))


def read_rows(path: str):
    """(line number, row as a dict) for each data row, after checking the header; the file
    is read as it goes, in constant memory."""
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        try:
            yield from _numbered(reader)
        except UnicodeDecodeError as error:
            raise Problem(f"line {reader.line_num + 1}: the file is not UTF-8 "
                          f"({error.reason})") from None


def _numbered(reader):
    header = next(reader, None)
    if header is None or tuple(header) != HEADER:
        raise Problem(f"line 1: the header is not a ledger export's ({FORMAT})")
    ended = reader.line_num
    for cells in reader:
        line, ended = ended + 1, reader.line_num  # a quoted cell may span lines
        if len(cells) != len(HEADER):
            raise Problem(f"line {line}: {len(cells)} cells instead of {len(HEADER)}: the row "
                          "is damaged or the file is truncated")
        yield line, dict(zip(HEADER, cells))


def entries(path: str):
    """The file's entries in order, each with its postings."""
    current = None
    for line, row in read_rows(path):
        _check_cells(line, row)
        if current is None or row["chain_seq"] != current.cells["chain_seq"]:
            if current is not None:
                yield current
            current = Entry(line, row)
        _same_transaction(current, line, row)
        current.postings.append(_posting(row))
        current.last_line = line
    if current is not None:
        yield current


def _check_cells(line: int, row: dict) -> None:
    where = f"line {line} (transaction {row['transaction_id']})"
    if row["chain_seq"] == "":
        raise Problem(f"{where} is not sealed yet: seal the ledger (flask --app wsgi ledger "
                      "seal), then download the export and its manifest again")
    numbers = [row[name] for name in (*INTEGER_CELLS, "chain_seq")]
    if row["balance_after"]:
        numbers.append(row["balance_after"])
    if not all(_is_integer(number) for number in numbers):
        raise Problem(f"{where}: a number cell is not an integer")
    if not all(_is_hash(row[name]) for name in ("chain_prev_hash", "chain_hash")):
        raise Problem(f"{where}: a chain hash is not 64 hexadecimal digits")


def _is_integer(cell: str) -> bool:
    digits = cell[1:] if cell.startswith("-") else cell
    return digits.isascii() and digits.isdigit()


def _is_hash(cell: str) -> bool:
    return len(cell) == 64 and all(char in "0123456789abcdef" for char in cell)


def _same_transaction(entry: Entry, line: int, row: dict) -> None:
    for name in (*TRANSACTION_CELLS, *CHAIN_CELLS):
        if row[name] != entry.cells[name]:
            raise Problem(f"line {line} (seq {row['chain_seq']}, transaction "
                          f"{row['transaction_id']}): its {name} differs from line "
                          f"{entry.line}'s, which belongs to the same entry")


# ---------------------------------------------------------------- verifying against a manifest


@dataclass
class Verification:
    """One export checked against its manifest, in three reads of the file: the order of its
    rows, each entry's hash and link, then its bytes."""

    path: str
    manifest: dict
    published: dict = field(default_factory=dict)  # seq -> hash, until found in the file
    rows: int = 0
    entries: int = 0
    first: Entry | None = None
    last: Entry | None = None

    @property
    def complete(self) -> bool:
        return self.manifest["complete"] is True

    def run(self) -> str:
        """The one-line summary of a sound export; raises Problem naming the first fault."""
        self.check_manifest()
        self.check_order()
        for entry in entries(self.path):
            self.check_entry(entry)
        self.check_totals()
        self.check_bytes()
        return self.summary()

    def check_manifest(self) -> None:
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise Problem(f"the manifest is not a {FORMAT} manifest")
        for name in ("complete", "rows", "entries", "csv_sha256"):
            if name not in self.manifest:
                raise Problem(f"the manifest has no {name}")

    def check_order(self) -> None:
        """Entries go up by seq with their rows together, so a moved row is named as moved
        before any hash is computed."""
        seen, seen_line = None, None
        for line, row in read_rows(self.path):
            if not _is_integer(row["chain_seq"]):
                return  # not sealed, or damaged: the next read names it
            seq = int(row["chain_seq"])
            if seen is not None and seq < seen:
                raise Problem(f"line {line} (seq {seq}, transaction {row['transaction_id']}): "
                              f"out of order after seq {seen} on line {seen_line}: rows were "
                              "moved")
            seen, seen_line = seq, line

    def check_entry(self, entry: Entry) -> None:
        if self.last is None:
            self.check_first(entry)
        elif self.complete or entry.seq == self.last.seq + 1:
            _check_link(self.last, entry)
        if entry.recomputed_hash() != entry.cells["chain_hash"]:
            raise Problem(f"{entry.where}: the entry's hash does not match its cells: a cell "
                          "was edited, or one of its posting rows was removed, added or moved")
        if self.published.pop(entry.seq, entry.cells["chain_hash"]) != entry.cells["chain_hash"]:
            raise Problem(f"{entry.where}: its hash differs from the published head for seq "
                          f"{entry.seq}")
        self.rows += len(entry.postings)
        self.entries += 1
        self.first, self.last = self.first or entry, entry

    def check_first(self, entry: Entry) -> None:
        if entry.seq != self.manifest.get("first_seq"):
            raise Problem(f"{entry.where}: the file starts at seq {entry.seq} but the "
                          f"manifest's first_seq is {self.manifest.get('first_seq')}: the "
                          "manifest belongs to another export, or the first entries were removed")
        if self.complete and entry.cells["chain_prev_hash"] != self.manifest.get(
                "hash_before_first"):
            raise Problem(f"{entry.where}: its previous hash is not the manifest's "
                          "hash_before_first: the manifest belongs to another export")

    def check_totals(self) -> None:
        last_seq = self.last.seq if self.last else None
        if last_seq != self.manifest.get("last_seq"):
            raise Problem(f"the file ends at seq {last_seq} but the manifest's last_seq is "
                          f"{self.manifest.get('last_seq')}: the file is truncated or the "
                          "manifest belongs to another export")
        if self.last and self.last.cells["chain_hash"] != self.manifest.get("hash_after_last"):
            raise Problem(f"{self.last.where}: its hash is not the manifest's hash_after_last")
        if (self.rows, self.entries) != (self.manifest["rows"], self.manifest["entries"]):
            raise Problem(f"the file has {self.rows:,} rows in {self.entries:,} entries, the "
                          f"manifest says {self.manifest['rows']:,} in "
                          f"{self.manifest['entries']:,}")
        if self.published:
            raise Problem(f"the published head seq {min(self.published)} is not in this file")

    def check_bytes(self) -> None:
        digest = hashlib.sha256()
        with open(self.path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != self.manifest["csv_sha256"]:
            raise Problem("every entry checks, but the file's sha256 differs from the "
                          "manifest's: its bytes were changed (re-saved by a spreadsheet? other "
                          "line endings?) or the manifest belongs to another download")

    def summary(self) -> str:
        counts = f"{self.rows:,} rows, {self.entries:,} entries"
        if self.last is None:
            return f"OK {counts}, file sha256 matches"
        span = f"seq {self.first.seq}..{self.last.seq}"
        if self.complete:
            before, after = self.first.cells["chain_prev_hash"], self.last.cells["chain_hash"]
            return f"OK {counts}, {span}, chain {before[:8]}…→{after[:8]}…, file sha256 matches"
        return (f"OK (integrity only) {counts} between {span}, every entry's hash recomputes, "
                "file sha256 matches; completeness is NOT proven: the export was filtered")


def _check_link(previous: Entry, entry: Entry) -> None:
    if entry.seq != previous.seq + 1:
        missing = (f"seq {previous.seq + 1}" if entry.seq == previous.seq + 2
                   else f"seq {previous.seq + 1} to {entry.seq - 1}")
        raise Problem(f"{entry.where}: the chain jumps from seq {previous.seq} to {entry.seq}: "
                      f"{missing} missing (a deleted entry)")
    if entry.cells["chain_prev_hash"] != previous.cells["chain_hash"]:
        raise Problem(f"{entry.where}: its previous hash is not the hash of seq {previous.seq} "
                      f"on {previous.lines}: the chain is broken here")


# ---------------------------------------------------------------- the command


def _published(value: str) -> tuple[int, str]:
    seq, _, digest = value.partition(":")
    if not _is_integer(seq) or not _is_hash(digest.lower()):
        raise argparse.ArgumentTypeError("expected SEQ:HASH, like 1234:9f8e...")
    return int(seq), digest.lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_export", description="Verify a ledger CSV export against its manifest, "
        "offline (standard library only).")
    parser.add_argument("export", help="the CSV file (transactions.csv)")
    parser.add_argument("manifest", help="its manifest (transactions.manifest.json)")
    parser.add_argument("--head", type=_published, action="append", default=[],
                        metavar="SEQ:HASH", help="a head published elsewhere (`ledger "
                        "chain-head`); its entry must be in the file with this hash")
    args = parser.parse_args(argv)
    try:
        with open(args.manifest, "rb") as manifest:
            wanted = json.load(manifest)
        os.stat(args.export)
    except (OSError, ValueError) as error:
        print(f"cannot read the files: {error}", file=sys.stderr)
        return 2
    try:
        print(Verification(args.export, wanted, dict(args.head)).run())
    except Problem as problem:
        print(f"FAIL {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
