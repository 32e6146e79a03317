"""SQLite, the embedded default (issue 16): one gunicorn process whose threads queue for the one
writer on a lock of the process (extensions.py) instead of polling the file lock, and WAL with
SQLITE_SYNCHRONOUS. Real threads on a real SQLite file; exact balances afterwards."""
import pytest
from sqlalchemy import text

from tests.threads import run_at_once
from wallet_web import audit, create_app, ledger, queries
from wallet_web.extensions import db


@pytest.mark.sqlite_only
def test_sixty_four_threads_writing_at_once_all_get_their_turn(app, make_user, wallet_of):
    user = make_user(balance=1_000)
    calls = ([lambda n=n: ledger.topup(user, "GOLD", 3, f"up-{n}") for n in range(32)]
             + [lambda n=n: ledger.spend(user, "GOLD", 2, f"down-{n}") for n in range(32)])

    results = run_at_once(app, calls)

    assert all(isinstance(result, ledger.Receipt) for result in results), results
    assert queries.account_balance(wallet_of(user)) == 1_000 + 32 * 3 - 32 * 2
    assert audit.verify().ok


@pytest.mark.sqlite_only
def test_a_refused_write_gives_the_turn_back(app, make_user):
    user = make_user(balance=5)
    for attempt in range(3):  # a turn kept by a refusal would make the next write wait and fail
        with pytest.raises(Exception, match="holds 5"):
            ledger.spend(user, "GOLD", 50, f"too-much-{attempt}")
    assert ledger.topup(user, "GOLD", 1, "after-refusals").postings


@pytest.mark.parametrize("synchronous", ["normal", "FULL"])
@pytest.mark.sqlite_only
def test_the_sqlite_connection_runs_wal_with_the_configured_synchronous(
        database_url, synchronous):
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "WALLET_ENV": "test",
                      "SQLITE_SYNCHRONOUS": synchronous})
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == {"NORMAL": 1, "FULL": 2}[
            synchronous.upper()]
        db.engine.dispose()


def test_an_unknown_synchronous_setting_refuses_to_start(database_url):
    with pytest.raises(RuntimeError, match="SQLITE_SYNCHRONOUS must be FULL or NORMAL"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SQLITE_SYNCHRONOUS": "OFF"})
