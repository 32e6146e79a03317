"""Backup and restore as docs/operations.md tells: pg_dump -Fc, pg_restore into a new
database, and `flask ledger verify` passes on the restored copy."""
import subprocess

import psycopg
import pytest

from tests.ops.test_gunicorn import ledger_verify
from wallet_web import ledger

STATE = ("SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM postings), "
         "(SELECT array_agg(balance ORDER BY id) FROM accounts), "
         "(SELECT array_agg(balance ORDER BY account_id, shard) FROM balance_shards)")


def libpq(url: str) -> str:
    return url.replace("+psycopg", "")


def database_state(url: str) -> tuple:
    with psycopg.connect(libpq(url)) as conn:
        return conn.execute(STATE).fetchone()


@pytest.fixture
def restored_url(scratch_database):
    return scratch_database("restored")


def some_history(make_user) -> None:
    bob = make_user(balance=500)
    ledger.bonus(bob, "GOLD", 25, "backup-bonus")
    spent = ledger.spend(bob, "GOLD", 100, "backup-spend")
    ledger.reverse(spent.id, "backup-reversal")
    ledger.topup(2, "DIAMOND", 7, "backup-diamonds")


def test_a_restored_dump_is_identical_and_passes_ledger_verify(
        app, make_user, database_url, restored_url, tmp_path):
    some_history(make_user)
    dump = tmp_path / "wallet.dump"
    subprocess.run(["pg_dump", "--format=custom", "--file", str(dump), libpq(database_url)],
                   check=True, timeout=60)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "--dbname",
                    libpq(restored_url), str(dump)], check=True, timeout=60)
    assert database_state(restored_url) == database_state(database_url)
    verify = ledger_verify(restored_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_ledger_verify_catches_a_restored_copy_that_was_tampered_with(
        app, database_url, restored_url, tmp_path):
    dump = tmp_path / "wallet.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(dump), libpq(database_url)], check=True,
                   timeout=60)
    subprocess.run(["pg_restore", "--no-owner", "-d", libpq(restored_url), str(dump)],
                   check=True, timeout=60)
    with psycopg.connect(libpq(restored_url), autocommit=True) as conn:
        conn.execute("UPDATE accounts SET balance = balance + 1 WHERE user_id = 2 "
                     "AND kind = 'wallet' AND asset_code = 'GOLD'")
    verify = ledger_verify(restored_url)
    assert verify.returncode == 1
