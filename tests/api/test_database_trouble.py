"""A database in trouble is a retryable 503 on the API with exactly the documented code and
Retry-After (docs/operations.md, "What the client sees": 2 s for database_unavailable, 1 s for
database_timeout), and the movement that met it changed nothing: an exhausted connection pool,
a deadlock in the request's own statement, a database that is down. On PostgreSQL (a locked
SQLite database: test_busy_database.py). Every wait polls for an event under a deadline that
only a hang reaches: the box may be busy."""
import threading
import time

import psycopg
import pytest

from wallet_web import accounts, api_keys
from wallet_web.config import Config
from wallet_web.extensions import db

from .conftest import _free_port

HANG_GUARD_SECONDS = 60


def plain(url: str) -> str:
    return url.replace("+psycopg", "")


def assert_retryable_503(response, code: str, retry_after: str, reason: str):
    assert response.status_code == 503, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    assert response.headers["Retry-After"] == retry_after
    error = response.json["error"]
    assert (set(error), error["code"]) == ({"code", "message"}, code)
    assert reason in error["message"]


@pytest.fixture
def books(database_url, make_user, wallet_of):
    """A user with 100 GOLD, and what the database holds for it, read on a fresh connection."""
    user = make_user(balance=100)
    wallet = wallet_of(user)

    def held(reference_id: str) -> tuple[int, int]:
        """(the wallet's balance, how many transactions carry reference_id)"""
        with psycopg.connect(plain(database_url)) as conn:
            balance = conn.execute("SELECT balance FROM accounts WHERE id = %s", (wallet,))
            count = conn.execute("SELECT count(*) FROM transactions WHERE reference_id = %s",
                                 (reference_id,))
            return balance.fetchone()[0], count.fetchone()[0]

    held.user, held.wallet = user, wallet
    return held


@pytest.fixture
def write_headers(app) -> dict:
    return {"Authorization": f"Bearer {api_keys.create_key('trouble', 'write')[1]}"}


def assert_the_retry_moves_once(client, headers, body, books, before: int):
    retried = client.post("/wallet/topup", json=body, headers=headers)
    assert (retried.status_code, retried.json["status"]) == (200, "success")
    assert "Idempotent-Replayed" not in retried.headers  # the failed attempt left no trace
    assert books(body["reference_id"]) == (before + body["amount"], 1)


# ---------------------------------------------------------------- an exhausted pool


def test_an_exhausted_pool_is_503_database_timeout_and_moves_nothing(
        app_with, books, write_headers):
    one_connection = {**Config.SQLALCHEMY_ENGINE_OPTIONS, "pool_size": 1, "max_overflow": 0,
                      "pool_timeout": 0.2}
    tight = app_with(SQLALCHEMY_ENGINE_OPTIONS=one_connection)
    client = tight.test_client()
    balance_url = f"/wallet/{books.user}/balance"
    assert client.get(balance_url, headers=write_headers).status_code == 200  # key now cached
    body = {"user_id": books.user, "amount": 7, "reference_id": "pool-exhausted"}
    uncached = {"Authorization": f"Bearer {api_keys.create_key('new', 'read')[1]}"}
    with tight.app_context():
        held = db.engine.connect()  # the pool's only connection
    try:
        moved = client.post("/wallet/topup", json=body, headers=write_headers)  # in the ledger
        looked_up = client.get(balance_url, headers=uncached)  # in the key lookup
    finally:
        held.close()
    assert_retryable_503(moved, "database_timeout", "1", "no free database connection")
    assert_retryable_503(looked_up, "database_timeout", "1", "no free database connection")
    assert books("pool-exhausted") == (100, 0)
    assert_the_retry_moves_once(client, write_headers, body, books, 100)


# ---------------------------------------------------------------- a deadlock


def wait_until(condition, what: str):
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.01)


def blocked_by(watcher, pid: int) -> list[int]:
    """The sessions waiting for a lock that session `pid` holds."""
    rows = watcher.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                           (pid,))
    return [row[0] for row in rows]


def in_thread(work) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    return thread, result


CLAIM = ("INSERT INTO transactions (kind, reference_id, fingerprint, description, actor, "
         "created_at) VALUES ('topup', %s, 'outside', '', 'outside', now())")


def test_a_deadlock_in_the_requests_statement_is_503_database_timeout_and_moves_nothing(
        app_with, database_url, books, write_headers):
    """The request's ledger_apply claims its reference, then locks the wallet, then a treasury
    shard. Outside, session A holds the wallet and session B every treasury shard; B then
    claims the same reference and so waits for the request. When A lets the wallet go, the
    request waits for B while B waits for it: the cycle is closed by the request's own wait,
    so its deadlock check (after deadlock_timeout, 1 s) finds it, whatever the scheduling."""
    patient = app_with(DB_LOCK_TIMEOUT_MS=HANG_GUARD_SECONDS * 1000,  # no lock timeout first
                       DB_STATEMENT_TIMEOUT_MS=2 * HANG_GUARD_SECONDS * 1000)
    client = patient.test_client()
    assert client.get(f"/wallet/{books.user}/balance", headers=write_headers).status_code == 200
    treasury = accounts.ensure_house_accounts("GOLD")["treasury"]
    body = {"user_id": books.user, "amount": 7, "reference_id": "deadlocked"}
    url = plain(database_url)
    with psycopg.connect(url) as holder_a, psycopg.connect(url) as holder_b, \
            psycopg.connect(url, autocommit=True) as watcher:
        holder_b.execute("SET deadlock_timeout = '10min'")  # B never is the one to give up
        holder_a.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (books.wallet,))
        holder_b.execute("SELECT 1 FROM balance_shards WHERE account_id = %s FOR UPDATE",
                         (treasury,))
        request, response = in_thread(
            lambda: client.post("/wallet/topup", json=body, headers=write_headers))
        wait_until(lambda: blocked_by(watcher, holder_a.info.backend_pid), "the request waiting")
        request_pid = blocked_by(watcher, holder_a.info.backend_pid)[0]
        claim, _ = in_thread(lambda: holder_b.execute(CLAIM, ("deadlocked",)))
        wait_until(lambda: holder_b.info.backend_pid in blocked_by(watcher, request_pid),
                   "B waiting for the request's claim")
        holder_a.rollback()
        request.join(HANG_GUARD_SECONDS)
        claim.join(HANG_GUARD_SECONDS)
        holder_b.rollback()
    assert_retryable_503(response[0], "database_timeout", "1", "deadlock detected")
    assert books("deadlocked") == (100, 0)
    assert_the_retry_moves_once(client, write_headers, body, books, 100)


# ---------------------------------------------------------------- a database that is down


@pytest.mark.parametrize("method, path", [("GET", "/wallet/1/balance"),
                                          ("POST", "/wallet/topup"),
                                          ("GET", "/api/v1/transactions")])
def test_a_database_that_is_down_is_503_database_unavailable_with_retry_after_2(
        app_with, method, path):
    down = app_with(SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://postgres@127.0.0.1:"
                                            f"{_free_port()}/down")
    body = {"user_id": 1, "amount": 1, "reference_id": "down"} if method == "POST" else None
    response = down.test_client().open(path, method=method, json=body,
                                       headers={"Authorization": "Bearer wk_anything"})
    assert_retryable_503(response, "database_unavailable", "2", "unavailable")
