"""A database that fails or stalls gives a retryable 503 (JSON on the API, a page on the
dashboard) that changed nothing, and a stuck lock cannot hold a wallet forever."""
import json
import re
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest

from tests.ops.support import (
    HANG_GUARD_SECONDS,
    app_with,
    free_port,
    replayed,
    took_effect,
)
from wallet_web import api_keys
from wallet_web.extensions import db


def plain(url: str) -> str:
    return url.replace("+psycopg", "")


def gold_balance(database_url: str, user_id: int) -> int:
    with psycopg.connect(plain(database_url)) as conn:
        return conn.execute("SELECT balance FROM accounts WHERE user_id = %s AND kind = 'wallet' "
                            "AND asset_code = 'GOLD'", (user_id,)).fetchone()[0]


def transactions_with(database_url: str, reference_id: str) -> int:
    with psycopg.connect(plain(database_url)) as conn:
        return conn.execute("SELECT count(*) FROM transactions WHERE reference_id = %s",
                            (reference_id,)).fetchone()[0]


@contextmanager
def wallet_row_locked(database_url: str, user_id: int):
    """Another session holds the user's GOLD wallet row FOR UPDATE, like a stuck transaction."""
    with psycopg.connect(plain(database_url)) as holder:
        holder.execute("SELECT id FROM accounts WHERE user_id = %s AND asset_code = 'GOLD' "
                       "AND kind = 'wallet' FOR UPDATE", (user_id,))
        yield
        holder.rollback()


# docs/operations.md, "What the client sees": Retry-After 2 s for database_unavailable, 1 s for
# database_timeout.
RETRY_AFTER = {"database_unavailable": "2", "database_timeout": "1"}


def assert_retryable_json(response, code: str):
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert response.headers["Retry-After"] == RETRY_AFTER[code]


@pytest.fixture
def ops_app(database_url, app):
    """make(**settings) -> (test client, write-key headers) of an app with those settings."""
    made = []

    def make(**settings):
        other = app_with(database_url, **settings)
        made.append(other)
        with other.app_context():
            token = api_keys.create_key("resilience", "write")[1]
        return other.test_client(), {"Authorization": f"Bearer {token}"}

    yield make
    for other in made:
        with other.app_context():
            db.engine.dispose()


def test_the_timeouts_reach_every_database_session(ops_app):
    client, _ = ops_app(DB_STATEMENT_TIMEOUT_MS=1234, DB_LOCK_TIMEOUT_MS=567,
                        DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=45000)
    with client.application.app_context(), db.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1234ms"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "567ms"
        assert conn.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "45s"


def test_a_locked_wallet_gives_503_after_the_lock_timeout_and_changes_nothing(
        ops_app, database_url, log_lines):
    client, headers = ops_app(DB_LOCK_TIMEOUT_MS=300)
    body = {"user_id": 2, "amount": 5, "reference_id": "locked-topup"}
    before = gold_balance(database_url, 2)
    with wallet_row_locked(database_url, 2):
        started = time.monotonic()
        response = client.post("/wallet/topup", json=body, headers=headers)
        waited = time.monotonic() - started
    assert_retryable_json(response, "database_timeout")
    # The lock timeout ended the wait (the statement timeout, 10 s, would say so instead).
    assert "lock timeout" in response.json["error"]["message"]
    assert waited >= 0.3
    assert gold_balance(database_url, 2) == before
    assert transactions_with(database_url, "locked-topup") == 0
    warning, request_line = log_lines()
    assert (warning["level"], warning["code"], warning["reason"]) == (
        "WARNING", "database_timeout", "lock timeout")
    assert (request_line["status"], request_line["request_id"]) == (503, warning["request_id"])
    retried = client.post("/wallet/topup", json=body, headers=headers)
    assert took_effect(retried)
    assert gold_balance(database_url, 2) == before + 5


def test_a_statement_timeout_gives_503_and_changes_nothing(ops_app, database_url):
    client, headers = ops_app(DB_STATEMENT_TIMEOUT_MS=300, DB_LOCK_TIMEOUT_MS=0)
    body = {"user_id": 2, "amount": 5, "reference_id": "slow-topup"}
    before = gold_balance(database_url, 2)
    with wallet_row_locked(database_url, 2):
        response = client.post("/wallet/topup", json=body, headers=headers)
    assert_retryable_json(response, "database_timeout")
    assert "statement timeout" in response.json["error"]["message"]
    assert gold_balance(database_url, 2) == before
    assert transactions_with(database_url, "slow-topup") == 0


def terminate_other_sessions(database_url: str) -> int:
    with psycopg.connect(plain(database_url), autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())


def test_a_killed_busy_connection_gives_one_503_then_the_same_request_succeeds(
        ops_app, database_url):
    client, headers = ops_app(DB_PING_IDLE_SECONDS=3600,
                              SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0})
    assert client.get("/wallet/2/balance", headers=headers).status_code == 200
    before = gold_balance(database_url, 2)
    assert terminate_other_sessions(database_url) >= 1
    body = {"user_id": 2, "amount": 9, "reference_id": "after-kill"}
    assert_retryable_json(client.post("/wallet/topup", json=body, headers=headers),
                          "database_unavailable")
    assert took_effect(client.post("/wallet/topup", json=body, headers=headers))
    assert replayed(client.post("/wallet/topup", json=body, headers=headers))
    assert gold_balance(database_url, 2) == before + 9


def test_a_connection_lost_by_the_ledger_pool_renews_the_engine_s_too(ops_app, database_url):
    """Both pools hold connections of one server: losing one means losing all, so one failed
    request renews both (a movement of cached accounts meets it on the ledger pool)."""
    client, headers = ops_app(DB_PING_IDLE_SECONDS=3600)
    warm = {"user_id": 2, "amount": 1, "reference_id": "warm-both-pools"}
    assert took_effect(client.post("/wallet/topup", json=warm, headers=headers))
    assert client.get("/api/v1/users/2", headers=headers).status_code == 200  # the engine's
    before = gold_balance(database_url, 2)
    assert terminate_other_sessions(database_url) >= 2
    body = {"user_id": 2, "amount": 9, "reference_id": "after-kill-on-the-ledger-pool"}
    assert_retryable_json(client.post("/wallet/topup", json=body, headers=headers),
                          "database_unavailable")
    assert took_effect(client.post("/wallet/topup", json=body, headers=headers))
    assert client.get("/api/v1/users/2", headers=headers).status_code == 200
    assert gold_balance(database_url, 2) == before + 9


@pytest.fixture
def down_app(ops_app):
    """An app whose database refuses connections (nothing listens on its port)."""
    from tests.conftest import _config_dict
    from wallet_web import create_app

    return create_app({**_config_dict(), "DB_CONNECT_TIMEOUT_SECONDS": 60,
                       "SQLALCHEMY_DATABASE_URI":
                       f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/down"})


def test_the_api_answers_503_json_at_once_while_the_database_is_down(down_app):
    """A refused connection fails at once, without waiting for the connect timeout (60 s in
    down_app; the bound only stops a hang)."""
    started = time.monotonic()
    response = down_app.test_client().get("/wallet/2/balance",
                                          headers={"Authorization": "Bearer wk_anything"})
    assert_retryable_json(response, "database_unavailable")
    assert time.monotonic() - started < HANG_GUARD_SECONDS / 2


def test_the_dashboard_shows_a_friendly_page_while_the_database_is_down(down_app):
    client = down_app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "1"  # a signed-in operator: loading them needs the database
    response = client.get("/")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert response.headers["Retry-After"] == RETRY_AFTER["database_unavailable"]
    page = response.get_data(as_text=True)
    assert "temporarily unavailable" in page
    assert "Traceback" not in page and "OperationalError" not in page
    assert "<style" not in page  # the dashboard's CSP would block it: the stylesheet is static
    stylesheet = re.search(r'href="([^"]+\.css)"', page).group(1)
    assert client.get(stylesheet).status_code == 200


@pytest.fixture
def schemaless_url(scratch_database):
    """A reachable database without the wallet's tables: queries fail as a bug would."""
    return scratch_database("schemaless")


def test_a_failing_query_that_is_not_an_outage_stays_a_500(schemaless_url, log_lines):
    """Only outages and timeouts become a retryable 503: a programming error must not. Its
    logged traceback does not show the statement's parameters (here the key's hash)."""
    from sqlalchemy.exc import ProgrammingError

    app = app_with(schemaless_url, PROPAGATE_EXCEPTIONS=False)
    response = app.test_client().get("/wallet/2/balance",
                                      headers={"Authorization": "Bearer wk_anything"})
    assert response.status_code == 500
    error = next(line for line in log_lines() if line["level"] == "ERROR")
    assert "UndefinedTable" in error["exc"] and error["request_id"]
    assert api_keys.hash_token("wk_anything") not in json.dumps(log_lines())
    with app.app_context():
        db.engine.dispose()
    with pytest.raises(ProgrammingError):  # and with propagation on, it is the original error
        app_with(schemaless_url).test_client().get(
            "/wallet/2/balance", headers={"Authorization": "Bearer wk_anything"})


def test_concurrent_requests_on_a_locked_wallet_all_fail_fast(ops_app, database_url):
    """A stuck lock does not pile up waiting threads: while it is still held, each of them
    gives up on its own lock timeout."""
    client, headers = ops_app(DB_LOCK_TIMEOUT_MS=300)
    replies = []

    def topup(n: int):
        body = {"user_id": 2, "amount": 1, "reference_id": f"queued-{n}"}
        replies.append(client.post("/wallet/topup", json=body, headers=headers))

    with wallet_row_locked(database_url, 2):
        threads = [threading.Thread(target=topup, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG_GUARD_SECONDS)
        assert len(replies) == 4, "every request ended while the lock was still held"
    for reply in replies:
        assert_retryable_json(reply, "database_timeout")
        assert "lock timeout" in reply.json["error"]["message"]
