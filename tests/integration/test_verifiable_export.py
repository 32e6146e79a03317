"""The verifiable export: the ledger CSV in chain order with each entry's seq and hashes, its
manifest, and `python -m wallet_web.verify_export`, which checks the pair offline and names the
first row that was edited, deleted, moved or cut off."""
import ast
import contextlib
import hashlib
import io
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text

from wallet_web import ROOT_DIR, api_keys, chain, exports, holds, ledger, verify_export
from wallet_web.extensions import db
from wallet_web.ledger import Leg
from wallet_web.models import ChainEntry, Transaction

from .test_chain import seal_all

VERIFIER = Path(ROOT_DIR) / "wallet_web" / "verify_export.py"


@dataclass
class Export:
    csv: Path
    manifest_path: Path
    manifest: dict

    def lines(self) -> list[str]:
        return self.csv.read_bytes().decode().split("\r\n")

    def write_lines(self, lines: list[str]) -> None:
        self.csv.write_bytes("\r\n".join(lines).encode())


@pytest.fixture
def download(app, tmp_path):
    """download(**filters) -> an Export: the manifest, then the CSV at its csv_url, saved."""
    client = app.test_client()
    key = {"Authorization": f"Bearer {api_keys.create_key('auditor', 'read')[1]}"}
    made = iter(range(1, 100))

    def fetch(**params) -> Export:
        manifest = client.get("/api/v1/transactions.manifest.json", query_string=params,
                              headers=key)
        assert manifest.status_code == 200, manifest.get_data(as_text=True)
        body = client.get(manifest.json["csv_url"], headers=key)
        assert body.status_code == 200 and body.mimetype == "text/csv"
        n = next(made)
        export = Export(tmp_path / f"export{n}.csv", tmp_path / f"manifest{n}.json",
                        manifest.json)
        export.csv.write_bytes(body.data)
        export.manifest_path.write_text(json.dumps(manifest.json))
        return export

    return fetch


def verify(export: Export, *options: str, manifest: Path | None = None) -> tuple[int, str]:
    """The verifier's exit code and its output, run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = verify_export.main([str(export.csv), str(manifest or export.manifest_path),
                                   *options])
    return code, out.getvalue().strip()


@pytest.fixture
def history(app, make_user):
    """A sealed ledger with hostile text, a hold, a reversal, house legs; user ids."""
    player = make_user(balance=100, name="'quoted")
    other = make_user(balance=40)
    ledger.spend(player, "GOLD", 7, "=1+2", description="line one\nline two, \"quoted\"")
    ledger.transfer(player, other, "GOLD", 5, "transfer-1", description="  Première passe")
    gone = ledger.bonus(other, "GOLD", 3, "bonus-1", metadata={"ticket": "'SUP-1"})
    ledger.reverse(gone.id, "reversal-1")
    holds.place(player, "GOLD", 9, "hold-1")
    seal_all()
    return player, other


def untouched(download) -> Export:
    export = download()
    assert verify(export)[0] == 0
    return export


# ---------------------------------------------------------------- the untouched pair


@pytest.mark.both_backends
def test_the_verifier_passes_an_untouched_export_and_its_manifest(app, history, download):
    export = download()
    code, said = verify(export)
    manifest = export.manifest
    assert code == 0, said
    assert said == (f"OK {manifest['rows']:,} rows, {manifest['entries']:,} entries, seq "
                    f"1..{manifest['last_seq']}, chain 00000000…→"
                    f"{manifest['hash_after_last'][:8]}…, file sha256 matches")
    transactions = db.session.scalar(select(db.func.count()).select_from(Transaction))
    assert (manifest["complete"], manifest["entries"], manifest["first_seq"]) == (
        True, transactions, 1)
    assert manifest["hash_before_first"] == "0" * 64
    assert manifest["chain_head"]["hash"] == manifest["hash_after_last"]
    assert manifest["csv_url"] == f"/api/v1/transactions.csv?through_seq={transactions}"


def test_the_manifest_hashes_the_very_bytes_of_its_csv(app, history, download):
    export = download()
    data = export.csv.read_bytes()
    assert hashlib.sha256(data).hexdigest() == export.manifest["csv_sha256"]
    rows = list(exports.csv.reader(io.StringIO(data.decode(), newline="")))
    assert tuple(rows[0]) == exports.HEADER
    assert len(rows) - 1 == export.manifest["rows"]
    seqs = [int(row[-3]) for row in rows[1:]]
    assert seqs == sorted(seqs) and set(seqs) == set(range(1, export.manifest["last_seq"] + 1))


def test_a_cell_that_starts_with_a_quote_gets_one_more_so_it_comes_back_exactly(
        app, history, download):
    rows = list(exports.csv.DictReader(io.StringIO(download().csv.read_text(), newline="")))
    assert {"''quoted"} <= {row["username"] for row in rows}
    assert {"''SUP-1"} <= {row["ticket"] for row in rows}
    assert {"'=1+2"} <= {row["reference_id"] for row in rows}
    assert {"'  Première passe"} <= {row["description"] for row in rows}
    assert [verify_export.unneutralise(exports.neutralise(value))
            for value in ("'x", "''", "=1", " a", "plain", "")] == ["'x", "''", "=1", " a",
                                                                   "plain", ""]


def test_a_manifest_pinned_to_a_seq_still_matches_its_csv_after_more_is_sealed(
        app, history, download, make_user, tmp_path):
    client = app.test_client()
    key = {"Authorization": f"Bearer {api_keys.create_key('pinned', 'read')[1]}"}
    manifest = client.get("/api/v1/transactions.manifest.json", headers=key).json
    make_user(balance=3)
    seal_all()
    later = client.get(manifest["csv_url"], headers=key).data
    assert hashlib.sha256(later).hexdigest() == manifest["csv_sha256"]
    everything = client.get("/api/v1/transactions.csv", headers=key).data
    assert len(everything) > len(later)


def test_rows_follow_the_chain_order_even_where_it_differs_from_the_id_order(
        app, make_user, download):
    """A writer that began first (lower xid) inserts its transaction last (higher id): the
    sealer takes it first, and the export follows the chain, not the ids."""
    early, late = make_user(), make_user()
    began, go, done = threading.Event(), threading.Event(), threading.Event()

    def slow_writer():
        with app.app_context():
            with ledger.atomic() as conn:
                conn.execute(text("SELECT pg_current_xact_id()"))  # its xid, now
                began.set()
                go.wait(30)
                wallet, house, rules = ledger.wallet_and_house(conn, early, "GOLD", "treasury")
                ledger.post_on(conn, "topup", [Leg(house, -5), Leg(wallet, 5)], "xid-first",
                               {"reference": "xid-first"}, rules=rules, asset="GOLD")
            db.session.remove()
            done.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    assert began.wait(30)
    id_first = ledger.topup(late, "DIAMOND", 5, "id-first").id
    go.set()
    writer.join(30)
    assert done.is_set()
    seal_all()
    xid_first = db.session.scalar(select(Transaction.id).filter_by(reference_id="xid-first"))
    assert id_first < xid_first
    export = download()
    order = [int(line.split(",")[0]) for line in export.lines()[1:] if line]
    assert order.index(xid_first) < order.index(id_first)
    assert verify(export)[0] == 0


# ---------------------------------------------------------------- what the verifier finds


def entry_lines(export: Export, seq: int) -> list[int]:
    """The indexes (0 = header) of the lines of entry `seq`."""
    return [n for n, line in enumerate(export.lines()) if line.split(",")[-3:-2] == [str(seq)]]


@pytest.fixture
def plain(app, make_user):
    """A sealed ledger whose cells hold no line breaks: one line per row."""
    first, second = make_user(balance=10), make_user(balance=20)
    ledger.transfer(first, second, "GOLD", 3, "plain-transfer")
    ledger.spend(second, "GOLD", 1, "plain-spend")
    seal_all()


def edit_cell(line: str, column: str, value: str) -> str:
    cells = line.split(",")
    cells[exports.HEADER.index(column)] = value
    return ",".join(cells)


def test_an_edited_amount_is_named_by_its_entry(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    target = entry_lines(export, 5)[1]
    lines[target] = edit_cell(lines[target], "amount", "-4")
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1
    tx = lines[target].split(",")[0]
    first = entry_lines(export, 5)[0] + 1
    assert said == (f"FAIL lines {first}-{first + 1} (seq 5, transaction {tx}): the entry's hash "
                    "does not match its cells: a cell was edited, or one of its posting rows was "
                    "removed, added or moved")


def test_an_edited_description_on_one_row_of_an_entry_is_named_by_its_line(
        app, plain, download):
    export = untouched(download)
    lines = export.lines()
    target = entry_lines(export, 4)[1]
    lines[target] = edit_cell(lines[target], "description", "nothing to see")
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1
    assert said.startswith(f"FAIL line {target + 1} (seq 4, ") and "description differs" in said


def test_a_deleted_posting_row_breaks_its_entrys_hash(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    del lines[entry_lines(export, 3)[1]]
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1 and said.startswith("FAIL line ") and "(seq 3, " in said
    assert "hash does not match its cells" in said


def test_a_deleted_entry_is_named_as_the_gap_it_leaves(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    gone = entry_lines(export, 4)
    next_line = entry_lines(export, 5)[0] + 1 - len(gone)
    lines = [line for n, line in enumerate(lines) if n not in gone]
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1
    assert said.startswith(f"FAIL lines {next_line}-{next_line + 1} (seq 5, ")
    assert said.endswith("the chain jumps from seq 3 to 5: seq 4 missing (a deleted entry)")


def test_swapped_rows_of_two_entries_are_named_as_moved(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    a, b = entry_lines(export, 3)[1], entry_lines(export, 4)[0]
    lines[a], lines[b] = lines[b], lines[a]
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1
    assert said.startswith(f"FAIL line {b + 1} (seq 3, ")
    assert f"out of order after seq 4 on line {a + 1}: rows were moved" in said


def test_swapped_postings_within_an_entry_break_its_hash(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    a, b = entry_lines(export, 5)
    lines[a], lines[b] = lines[b], lines[a]
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1 and f"FAIL lines {a + 1}-{b + 1} (seq 5, " in said


def test_a_file_cut_in_the_middle_of_a_row_names_that_row(app, plain, download):
    export = untouched(download)
    data = export.csv.read_bytes()
    last = data.rstrip(b"\r\n").rfind(b"\r\n") + 2
    export.csv.write_bytes(data[:last + 20])
    code, said = verify(export)
    assert code == 1
    line = data[:last].count(b"\r\n") + 1
    assert said.startswith(f"FAIL line {line}: ") and "truncated" in said


def test_a_file_cut_after_a_whole_entry_disagrees_with_the_manifests_end(app, plain, download):
    export = untouched(download)
    lines = export.lines()
    export.write_lines(lines[:entry_lines(export, export.manifest["last_seq"])[0]] + [""])
    code, said = verify(export)
    last = export.manifest["last_seq"]
    assert (code, said) == (1, f"FAIL the file ends at seq {last - 1} but the manifest's "
                               f"last_seq is {last}: the file is truncated or the manifest "
                               "belongs to another export")


def test_the_manifest_of_another_range_is_refused(app, plain, download, make_user):
    everything = untouched(download)
    shorter = download(through_seq=3)
    code, said = verify(everything, manifest=shorter.manifest_path)
    assert code == 1 and said.startswith("FAIL the file ends at seq ")
    make_user(balance=1)
    seal_all()
    since = db.session.scalar(select(Transaction.created_at).order_by(Transaction.id.desc()))
    later = download(since=since.isoformat())
    code, said = verify(everything, manifest=later.manifest_path)
    assert code == 1 and "the manifest belongs to another export" in said


def test_a_file_re_saved_with_other_line_endings_fails_on_its_sha256_alone(
        app, plain, download):
    export = untouched(download)
    export.csv.write_bytes(export.csv.read_bytes().replace(b"\r\n", b"\n"))
    code, said = verify(export)
    assert code == 1 and said.startswith("FAIL every entry checks, but the file's sha256")


def test_a_row_not_sealed_yet_fails_with_the_advice_to_seal_and_export_again(
        app, plain, download, make_user):
    export = untouched(download)
    make_user(balance=2)  # not sealed: the CSV without through_seq ends with it
    client = app.test_client()
    key = {"Authorization": f"Bearer {api_keys.create_key('eager', 'read')[1]}"}
    export.csv.write_bytes(client.get("/api/v1/transactions.csv", headers=key).data)
    code, said = verify(export)
    assert code == 1 and "is not sealed yet: seal the ledger" in said
    fresh = download().manifest  # pinned to what is sealed; it counts what it left out
    assert (fresh["unsealed_rows"], fresh["last_seq"]) == (2, export.manifest["last_seq"])


def test_a_published_head_is_checked_against_its_entry_in_the_file(app, plain, download):
    export = untouched(download)
    head = chain.head("ledger")
    assert verify(export, "--head", f"{head.seq}:{head.hash}")[0] == 0
    code, said = verify(export, "--head", f"{head.seq}:{'ab' * 32}")
    assert code == 1 and "differs from the published head" in said
    code, said = verify(export, "--head", f"{head.seq + 5}:{head.hash}")
    assert (code, said) == (1, f"FAIL the published head seq {head.seq + 5} is not in this file")


# ---------------------------------------------------------------- ranges


def test_a_time_range_is_a_complete_contiguous_span_of_the_chain(app, make_user, download):
    make_user(balance=1)
    seal_all()
    since = datetime.now(timezone.utc)
    inside = [make_user(balance=2), make_user(balance=3)]
    until = datetime.now(timezone.utc)
    make_user(balance=4)
    seal_all()
    export = download(since=since.isoformat(), until=until.isoformat())
    manifest = export.manifest
    sealed = dict(db.session.execute(select(ChainEntry.entry_id, ChainEntry.seq)
                                     .filter_by(chain="ledger")).all())
    wanted = db.session.scalars(select(Transaction.id).where(
        Transaction.created_at >= since, Transaction.created_at < until)).all()
    assert len(wanted) == len(inside)
    assert (manifest["first_seq"], manifest["last_seq"]) == (
        min(sealed[tx] for tx in wanted), max(sealed[tx] for tx in wanted))
    assert manifest["complete"] is True and "chosen by time" in manifest["statement"]
    assert manifest["hash_before_first"] != "0" * 64
    assert verify(export)[1].startswith(f"OK 4 rows, 2 entries, seq {manifest['first_seq']}..")


def test_an_empty_range_is_a_header_and_a_manifest_that_says_so(app, plain, download):
    export = download(since="2001-01-01T00:00:00Z", until="2001-01-02T00:00:00Z")
    assert export.csv.read_text().splitlines() == [",".join(exports.HEADER)]
    assert (export.manifest["rows"], export.manifest["first_seq"]) == (0, None)
    assert verify(export) == (0, "OK 0 rows, 0 entries, file sha256 matches")


@pytest.mark.both_backends
def test_a_filtered_export_proves_its_rows_integrity_not_completeness(
        app, history, download):
    player, _ = history
    export = download(user_id=player)
    manifest = export.manifest
    assert manifest["complete"] is False
    assert "does not prove completeness" in manifest["statement"]
    assert manifest["filters"] == {"user_id": player}
    code, said = verify(export)
    assert code == 0 and said.startswith("OK (integrity only) ")
    assert said.endswith("completeness is NOT proven: the export was filtered")
    lines = export.lines()
    lines[1] = edit_cell(lines[1], "amount", "12345")
    export.write_lines(lines)
    code, said = verify(export)
    assert code == 1 and "hash does not match its cells" in said


def test_the_csv_without_through_seq_keeps_unsealed_rows_at_the_end(app, plain, make_user):
    tx_id = ledger.topup(make_user(), "GOLD", 5, "late-one").id
    rows = list(exports.csv.reader(io.StringIO("".join(exports.audit_csv(
        exports.TransactionFilters())), newline="")))
    assert [row[0] for row in rows[-2:]] == [str(tx_id)] * 2
    assert {tuple(row[-3:]) for row in rows[-2:]} == {("", "", "")}
    pinned = "".join(exports.audit_csv(exports.TransactionFilters(), through_seq=2))
    assert {row[-3] for row in exports.csv.reader(io.StringIO(pinned))} - {"chain_seq"} == {
        "1", "2"}


def test_through_seq_is_validated_like_any_query_integer(app):
    client = app.test_client()
    key = {"Authorization": f"Bearer {api_keys.create_key('strict', 'read')[1]}"}
    for path in ("/api/v1/transactions.csv", "/api/v1/transactions.manifest.json"):
        for value in ("-1", "1.5", "²", str(2**63)):
            answer = client.get(path, query_string={"through_seq": value}, headers=key)
            assert (answer.status_code, answer.json["error"]["field"]) == (422, "through_seq")


# ---------------------------------------------------------------- the verifier itself


def test_the_verifier_runs_with_the_standard_library_alone(app, plain, download):
    export = untouched(download)
    bare = subprocess.run([sys.executable, "-I", "-S", str(VERIFIER), str(export.csv),
                           str(export.manifest_path)], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("OK ")
    as_module = subprocess.run([sys.executable, "-m", "wallet_web.verify_export",
                                str(export.csv), str(export.manifest_path)],
                               capture_output=True, text=True, timeout=60, cwd=ROOT_DIR)
    assert (as_module.returncode, as_module.stdout) == (0, bare.stdout)
    export.csv.write_bytes(export.csv.read_bytes()[:-80])
    broken = subprocess.run([sys.executable, "-I", "-S", str(VERIFIER), str(export.csv),
                             str(export.manifest_path)], capture_output=True, text=True,
                            timeout=60, cwd="/")
    assert broken.returncode == 1 and broken.stdout.startswith("FAIL line ")


def test_the_verifier_imports_only_the_standard_library():
    tree = ast.parse(VERIFIER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_unreadable_files_exit_2(tmp_path):
    missing = tmp_path / "missing.csv"
    with contextlib.redirect_stderr(io.StringIO()):
        assert verify_export.main([str(missing), str(missing)]) == 2


def test_the_worked_example_in_docs_audit_md_computes_what_it_says():
    doc = (Path(ROOT_DIR) / "docs" / "audit.md").read_text()
    example = doc.split("```python\n")[1].split("```")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(example, {})  # noqa: S102 (our own document)
    printed = out.getvalue().strip()
    assert f"It prints `{printed}`" in doc
    data = verify_export.ledger_entry_bytes(
        1, (1, "2025-01-01T00:00:00.000000Z", "topup", "order-7", "Première recharge",
            "api:shop", "", "", ""), [(17, 2, "GOLD", 250, 250), (1, 1, "GOLD", -250, None)])
    assert verify_export.chain_hash("0" * 64, data) == printed
    assert data.decode() in doc
