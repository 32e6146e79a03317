"""The hash chain: transactions and audit events sealed in order after they commit, by any
number of sealers, never on the write path; `ledger verify` recomputes both chains and names
the first entry whose rows were changed behind the triggers' back, as a superuser could."""
import hashlib
import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import select, text

from tests.threads import run_at_once
from tests.visibility import until_some
from wallet_web import ROOT_DIR, audit, audit_events, chain, ledger, sweeper
from wallet_web.extensions import db
from wallet_web.ledger import Leg
from wallet_web.models import AuditEvent, ChainEntry, ChainHead, Transaction
from wallet_web.moments import moment

FLASK = os.path.join(ROOT_DIR, ".venv", "bin", "flask")


def entries(name: str) -> list:
    db.session.rollback()
    return db.session.execute(select(ChainEntry.seq, ChainEntry.entry_id, ChainEntry.hash)
                              .filter_by(chain=name).order_by(ChainEntry.seq)).all()


def ids(model) -> set[int]:
    db.session.rollback()
    return set(db.session.scalars(select(model.id)))


def recorded(action: str = "logout", actor: str = "cli:test") -> None:
    audit_events.record(action, object_type="operator", object_id=actor)
    db.session.commit()


def flask(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "WALLET_ENV": "test"}
    return subprocess.run([FLASK, "--app", "wsgi", *args], cwd=ROOT_DIR, env=env,
                          capture_output=True, text=True, timeout=120)


def psql(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url.replace("+psycopg", ""))


def seal_all(timeout: float = 30) -> dict[str, int]:
    """chain.seal() until nothing committed is left: transaction ids are cluster-wide, so a
    writer in another database of a shared PostgreSQL (another test run) may hold the
    visibility bound back for a moment. How many entries each chain got."""
    db.session.rollback()  # nor may this session's own transaction hold it
    totals = dict.fromkeys(chain.CHAIN, 0)
    deadline = time.monotonic() + timeout
    while True:
        for name, sealed in chain.seal().items():
            totals[name] += sealed
        if not any(chain.pending().values()):
            return totals
        assert time.monotonic() < deadline, f"still not sealed: {chain.pending()}"
        time.sleep(0.05)


# ---------------------------------------------------------------- sealing


@pytest.mark.both_backends
def test_sealing_gives_every_transaction_and_audit_event_one_entry_in_commit_order(
        app, make_user):
    user = make_user(balance=10)
    ledger.spend(user, "GOLD", 3, "chain-spend")
    recorded()
    assert seal_all() == {"ledger": len(ids(Transaction)), "audit": len(ids(AuditEvent))}
    ledger_entries = entries("ledger")
    assert [seq for seq, _, _ in ledger_entries] == list(range(1, len(ids(Transaction)) + 1))
    assert [entry_id for _, entry_id, _ in ledger_entries] == sorted(ids(Transaction))
    assert {entry_id for _, entry_id, _ in entries("audit")} == ids(AuditEvent)
    assert chain.seal() == {"ledger": 0, "audit": 0}
    heads = {head.chain: head for head in chain.heads()}
    assert (heads["ledger"].seq, heads["ledger"].hash) == ledger_entries[-1][::2]


@pytest.mark.both_backends
def test_an_entry_hash_is_sha256_of_the_previous_hash_and_the_entrys_canonical_json(
        app, make_user):
    """The worked example of docs/audit.md, recomputed from the rows by hand."""
    user = make_user(balance=0)
    receipt = ledger.topup(user, "GOLD", 250, "chain-worked", description="Première",
                           metadata={"reason_code": "goodwill"})
    seal_all()
    seq, _, sealed = next(entry for entry in entries("ledger") if entry[1] == receipt.id)
    previous = next(entry[2] for entry in entries("ledger") if entry[0] == seq - 1)
    tx = db.session.get(Transaction, receipt.id)
    legs = [[leg.account_id, leg.account.user_id, leg.account.asset_code, leg.amount,
             leg.balance_after] for leg in tx.postings]
    value = ["wallet-ledger-v1", seq, tx.id, moment(tx.created_at), "topup", "chain-worked",
             "Première", "system", "goodwill", "", "", legs]
    data = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert hashlib.sha256(bytes.fromhex(previous) + data).hexdigest() == sealed
    assert b'"Premi\xc3\xa8re"' in data  # UTF-8, not \u escapes


def test_the_first_entry_follows_the_genesis_hash_of_64_zeros(app):
    seal_all()
    seq, tx_id, sealed = entries("ledger")[0]
    found = chain.load_transactions(db.session.connection(), [tx_id])[tx_id]
    data = chain.CHAIN["ledger"].encode(seq, found)
    assert sealed == hashlib.sha256(bytes(32) + data).hexdigest()


@pytest.mark.both_backends
def test_a_sealing_limit_seals_that_many_per_chain_and_the_next_call_goes_on(app, make_user):
    for n in range(5):
        make_user(balance=n + 1)
    total = len(ids(Transaction))
    db.session.rollback()
    assert chain.seal(limit=2)["ledger"] <= 2  # 2, or fewer while a writer holds the bound
    assert chain.seal(limit=2)["ledger"] <= 2
    assert chain.pending()["ledger"] >= total - 4
    seal_all()
    assert [seq for seq, _, _ in entries("ledger")] == list(range(1, total + 1))
    assert chain.check(db.session.connection(), "ledger").problem is None


@pytest.mark.both_backends
def test_transactions_posted_before_the_chain_existed_are_sealed_first_in_id_order(
        app, make_user):
    user = make_user(balance=5)
    db.session.remove()
    downgrade(revision="0009")  # no events, no chain: an older deployment
    ledger.topup(user, "GOLD", 3, "before-the-chain")
    upgrade()
    seal_all()
    sealed = [entry_id for _, entry_id, _ in entries("ledger")]
    assert sealed == sorted(ids(Transaction))
    assert audit.verify().ok


@contextmanager
def movement_held_open(app, user_id: int, reference: str):
    """A top-up written on its own connection and not committed until the block ends."""
    written, release = threading.Event(), threading.Event()
    failures = []

    def write():
        with app.app_context():
            try:
                with ledger.atomic() as conn:
                    wallet, house, rules = ledger.wallet_and_house(conn, user_id, "GOLD",
                                                                   "treasury")
                    ledger.post_on(conn, "topup", [Leg(house, -5), Leg(wallet, 5)], reference,
                                   {"reference": reference}, rules=rules, asset="GOLD")
                    written.set()
                    release.wait(30)
            except Exception as error:  # asserted below
                failures.append(error)
                written.set()
            finally:
                db.session.remove()

    writer = threading.Thread(target=write)
    writer.start()
    assert written.wait(30)
    try:
        yield
    finally:
        release.set()
        writer.join(30)
    assert failures == []


def test_a_transaction_that_commits_after_a_later_one_is_held_back_then_sealed_not_skipped(
        app, make_user):
    first, second = make_user(), make_user()
    seal_all()
    with movement_held_open(app, first, "slow-one"):
        fast = ledger.topup(second, "DIAMOND", 5, "fast-one")  # no house shard in common
        assert chain.seal()["ledger"] == 0  # the later one waits for the earlier writer
        assert fast.id not in {entry_id for _, entry_id, _ in entries("ledger")}
    slow = ledger.topup(first, "GOLD", 1, "slow-one-check")  # committed after the slow one
    seal_all()
    sealed = [entry_id for _, entry_id, _ in entries("ledger")]
    slow_id = db.session.scalar(select(Transaction.id).filter_by(reference_id="slow-one"))
    assert slow_id < fast.id and sealed[-3:] == [slow_id, fast.id, slow.id]
    assert sorted(sealed) == sorted(ids(Transaction))


def test_an_audit_event_that_commits_after_a_later_one_is_held_back_not_skipped(
        app, database_url):
    seal_all()
    with psql(database_url) as slow, psql(database_url) as fast:
        insert = ("INSERT INTO audit_events (created_at, action, outcome, actor) "
                  "VALUES (now(), 'logout', 'done', %s) RETURNING id")
        slow_id = slow.execute(insert, ("slow",)).fetchone()[0]
        fast_id = fast.execute(insert, ("fast",)).fetchone()[0]
        fast.commit()
        assert chain.seal()["audit"] == 0
        slow.commit()
    assert seal_all()["audit"] == 2
    assert [entry_id for _, entry_id, _ in entries("audit")][-2:] == [slow_id, fast_id]


def test_sealers_at_once_build_one_gap_free_chain(app, make_user, monkeypatch):
    monkeypatch.setattr(chain, "CHUNK", 7)  # many small chunks, so the sealers interleave
    user = make_user(balance=1000)
    for n in range(60):
        ledger.spend(user, "GOLD", 1, f"sealers-{n}")
    results = run_at_once(app, [chain.seal] * 4)
    assert not [result for result in results if isinstance(result, Exception)], results
    assert sum(result["ledger"] for result in results) + seal_all()["ledger"] == len(
        ids(Transaction))
    sealed = entries("ledger")
    assert [seq for seq, _, _ in sealed] == list(range(1, len(sealed) + 1))
    assert sorted(entry_id for _, entry_id, _ in sealed) == sorted(ids(Transaction))
    assert chain.check(db.session.connection(), "ledger").problem is None


def test_writers_and_a_sealer_at_once_leave_chains_that_verify(app, make_user):
    users = [make_user(balance=100) for _ in range(4)]
    writing = threading.Barrier(4)
    done = threading.Event()

    def writer(user_id: int):
        def write():
            writing.wait()
            for n in range(25):
                ledger.spend(user_id, "GOLD", 1, f"race-{user_id}-{n}")
                recorded("logout", f"writer-{user_id}")
            return "written"
        return write

    def sealer():
        sealed = 0
        while not done.is_set():
            sealed += sum(chain.seal().values())
        return sealed

    def writers_then_stop():
        results = run_at_once(app, [writer(user) for user in users])
        done.set()
        return results

    sealed, written = run_at_once(app, [sealer, writers_then_stop])
    assert written == ["written"] * 4, written
    seal_all()
    assert sorted(entry_id for _, entry_id, _ in entries("ledger")) == sorted(ids(Transaction))
    assert sorted(entry_id for _, entry_id, _ in entries("audit")) == sorted(ids(AuditEvent))
    report = audit.verify()
    assert report.ok, report.lines()
    assert [check.unsealed for check in report.chains] == [0, 0]


def test_the_sweeper_seals_what_committed(app, make_user):
    make_user(balance=5)
    db.session.rollback()
    swept = until_some(lambda: sweeper.sweep_once()["entries_sealed"])
    assert swept + sum(seal_all().values()) == len(ids(Transaction)) + len(ids(AuditEvent))


# ---------------------------------------------------------------- verifying


@pytest.mark.both_backends
def test_verify_recomputes_both_chains_and_counts_what_is_not_sealed_yet(app, make_user):
    make_user(balance=5)
    seal_all()
    make_user(balance=7)
    recorded()
    report = audit.verify()
    assert report.ok, report.lines()
    ledger_check, audit_check = report.chains
    assert ledger_check.problem is None and ledger_check.unsealed == 1
    assert audit_check.unsealed == 1
    lines = report.lines()
    assert any(line.startswith("ok    chain ledger:") for line in lines)
    assert "note  not sealed yet (flask --app wsgi ledger seal): 1 ledger, 1 audit" in lines


@contextmanager
def superuser(database_url: str, *tables: str):
    """A psycopg connection with the append-only triggers of `tables` disabled; committed at
    the end, the triggers enabled again."""
    with psql(database_url) as conn:
        for table in tables:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        yield conn
        for table in tables:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")


def sealed_ledger(make_user) -> list[int]:
    """Three wallets topped up and everything sealed: the transaction ids, in seq order."""
    for balance in (10, 20, 30):
        make_user(balance=balance)
    seal_all()
    return [entry_id for _, entry_id, _ in entries("ledger")]


TAMPERING = {
    "an amount": ("postings", "UPDATE postings SET amount = amount + 1 "
                  "WHERE id = (SELECT min(id) FROM postings WHERE transaction_id = %(tx)s)"),
    "a description": ("transactions", "UPDATE transactions SET description = 'edited' "
                      "WHERE id = %(tx)s"),
    "a posting": ("postings", "DELETE FROM postings WHERE id = "
                  "(SELECT max(id) FROM postings WHERE transaction_id = %(tx)s)"),
}


@pytest.mark.parametrize("what", TAMPERING)
def test_ledger_verify_names_the_first_sealed_transaction_whose_rows_were_changed(
        app, database_url, make_user, what):
    sealed = sealed_ledger(make_user)
    target, later = sealed[-2], sealed[-1]
    table, statement = TAMPERING[what]
    with superuser(database_url, table) as conn:
        conn.execute(statement, {"tx": target})
        conn.execute(statement, {"tx": later})
    result = flask(database_url, "ledger", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    seq = len(sealed) - 1
    assert (f"FAIL  chain ledger: seq {seq}, transaction {target}: its rows no longer give the "
            "sealed hash") in result.stdout
    assert "LEDGER INCONSISTENT" in result.stdout


def test_ledger_verify_names_a_deleted_audit_event(app, database_url, make_user):
    for n in range(3):
        recorded("logout", f"who-{n}")
    seal_all()
    seq, gone, _ = entries("audit")[-2]
    with superuser(database_url, "audit_events") as conn:
        conn.execute("DELETE FROM audit_events WHERE id = %s", (gone,))
    result = flask(database_url, "ledger", "verify")
    assert result.returncode == 1
    assert (f"FAIL  chain audit: seq {seq}, audit event {gone}: the audit event is gone from "
            "its table (deleted)") in result.stdout


def test_ledger_verify_names_an_entry_deleted_from_the_chain(app, database_url, make_user):
    sealed = sealed_ledger(make_user)
    with superuser(database_url, "chain_entries") as conn:
        conn.execute("DELETE FROM chain_entries WHERE chain = 'ledger' AND seq = 2")
    report = audit.verify()
    assert not report.ok
    assert report.chains[0].problem == (f"seq 3, transaction {sealed[2]}: the chain jumps from "
                                        "seq 1 to 3 (entries deleted)")


@pytest.mark.sqlite_only
def test_an_edit_behind_the_triggers_back_is_found_on_sqlite_too(app, make_user):
    sealed = sealed_ledger(make_user)
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER transactions_no_update"))
        conn.execute(text("UPDATE transactions SET actor = 'someone else' WHERE id = :id"),
                     {"id": sealed[0]})
    report = audit.verify()
    assert not report.ok
    assert report.chains[0].problem.startswith(f"seq 1, transaction {sealed[0]}: its rows no")


# ---------------------------------------------------------------- the commands


def test_ledger_seal_and_chain_head_print_each_chains_seq_and_hash(app, database_url,
                                                                   make_user):
    make_user(balance=5)
    recorded()
    sealed = flask(database_url, "ledger", "seal")
    assert sealed.returncode == 0, sealed.stderr
    db.session.rollback()
    heads = {row.chain: row for row in db.session.scalars(select(ChainHead))}
    assert sealed.stdout.splitlines() == [  # from seq 0: as many sealed as the head's seq
        f"audit: sealed {heads['audit'].seq}, head {heads['audit'].seq} {heads['audit'].hash}",
        f"ledger: sealed {heads['ledger'].seq}, head {heads['ledger'].seq} "
        f"{heads['ledger'].hash}"]
    seal_all()
    heads = {row.chain: row for row in db.session.scalars(select(ChainHead))}
    transactions, events = len(ids(Transaction)), len(ids(AuditEvent))
    printed = flask(database_url, "ledger", "chain-head")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [
        f"audit {events} {heads['audit'].hash} {moment(heads['audit'].sealed_at)}",
        f"ledger {transactions} {heads['ledger'].hash} {moment(heads['ledger'].sealed_at)}"]
    verified = flask(database_url, "ledger", "verify")
    assert verified.returncode == 0 and "ledger verified" in verified.stdout


def test_chain_head_before_any_sealing_says_never(app, database_url):
    printed = flask(database_url, "ledger", "chain-head")
    assert printed.stdout.splitlines() == [f"audit 0 {'0' * 64} never",
                                           f"ledger 0 {'0' * 64} never"]
