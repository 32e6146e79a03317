"""No request fails because another one holds the write lock: an API key's last_used_at is
written in its own short write transaction, best effort; a locked SQLite database that does
fail a request is the retryable 503."""
import sqlite3
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import create_engine, event, text, update
from sqlalchemy.engine import make_url

from wallet_web import api_keys, resilience
from wallet_web.extensions import db
from wallet_web.models import ApiKey, utcnow

from .conftest import at_once

pytestmark = pytest.mark.both_backends
THREADS = 16


def _idle_for_two_minutes(app, key_id: int):
    """Sets the key's last use two minutes back, and returns that moment."""
    idle_since = utcnow() - timedelta(minutes=2)
    db.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=idle_since))
    db.session.commit()
    app.extensions.get("api_key_cache", {}).clear()  # every request looks the key up
    return idle_since


def _last_used(key_id: int):
    db.session.rollback()
    return db.session.get(ApiKey, key_id, populate_existing=True).last_used_at


def test_a_burst_after_the_key_sat_idle_never_fails(app, make_user):
    key, token = api_keys.create_key("burst", "write")
    headers = {"Authorization": f"Bearer {token}"}
    user = make_user()

    def read_or_write(client, n):
        if n % 2:
            return client.get(f"/wallet/{user}/balance", headers=headers)
        body = {"user_id": user, "amount": 1, "reference_id": f"burst-{round_}-{n}"}
        return client.post("/wallet/topup", json=body, headers=headers)

    for round_ in range(3):
        idle_since = _idle_for_two_minutes(app, key.id)
        responses = at_once(app, THREADS, read_or_write)
        assert [r.status_code for r in responses] == [200] * THREADS, round_
        assert not any("Idempotent-Replayed" in r.headers for r in responses)
        assert _last_used(key.id) > idle_since  # the burst recorded its use


@pytest.fixture
def short_lock_waits(app, backend):
    """Every new connection gives up waiting for a lock after 0.2 s (the defaults wait
    seconds), so a test can hold a lock long enough to make a write fail quickly."""
    def shorten(dbapi_connection, _record):
        if backend == "sqlite":
            dbapi_connection.execute("PRAGMA busy_timeout=200")
        else:
            dbapi_connection.execute("SET lock_timeout = 200")
            dbapi_connection.commit()

    event.listen(db.engine, "connect", shorten)
    db.engine.dispose()
    yield
    event.remove(db.engine, "connect", shorten)
    db.engine.dispose()


@pytest.fixture
def hold_the_key_row(database_url, backend):
    """hold_the_key_row(key_id): another session takes the lock a touch of that key needs."""
    held = []

    def hold(key_id: int):
        if backend == "sqlite":
            conn = sqlite3.connect(make_url(database_url).database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg.connect(database_url.replace("+psycopg", ""))
            conn.execute("SELECT 1 FROM api_keys WHERE id = %s FOR UPDATE", (key_id,))
        held.append(conn)

    yield hold
    for conn in held:
        conn.rollback()
        conn.close()


def test_a_touch_that_cannot_get_its_lock_does_not_fail_the_request(
        app, make_user, short_lock_waits, hold_the_key_row):
    key, token = api_keys.create_key("patient", "read")
    user = make_user()
    _idle_for_two_minutes(app, key.id)
    before = _last_used(key.id)
    db.session.rollback()
    hold_the_key_row(key.id)
    response = app.test_client().get(f"/wallet/{user}/balance",
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert _last_used(key.id) == before  # the touch gave up; the request did not


# ---------------------------------------------------------------- a locked SQLite database


@pytest.fixture
def locked_sqlite_error(tmp_path):
    """A real `database is locked` error from SQLAlchemy: one connection holds the write lock
    and another, which waits for no lock, tries to write."""
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(Exception) as caught, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        yield caught.value
    finally:
        engine.dispose()
        holder.close()


def test_a_locked_sqlite_database_is_a_database_timeout(locked_sqlite_error):
    assert "locked" in str(locked_sqlite_error)
    trouble = resilience.classify(locked_sqlite_error)
    assert trouble is not None and trouble.code == "database_timeout"


@pytest.mark.parametrize("path, mimetype", [("/wallet/topup", "application/json"),
                                            ("/users/2/topup", "text/html")])
def test_a_locked_sqlite_database_is_a_retryable_503(app, locked_sqlite_error, path, mimetype):
    with app.test_request_context(path, method="POST"):
        response = resilience.database_error(locked_sqlite_error)
    assert (response.status_code, response.mimetype) == (503, mimetype)
    assert response.headers["Retry-After"] == "1"
    if mimetype == "application/json":
        assert response.json["error"]["code"] == "database_timeout"
