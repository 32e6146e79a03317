"""Pooled connections that the database dropped: replaced on checkout when idle, and after
one failed statement when busy (the pool is invalidated as a whole)."""
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

import seed
from tests.conftest import _config_dict
from wallet_web import accounts, create_app, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Account


def terminate_pooled_connection(url: str) -> None:
    with db.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def wallet_id(user_id: int) -> int:
    found = db.session.query(Account.id).filter_by(user_id=user_id, asset_code="GOLD",
                                                   kind="wallet").scalar()
    db.session.remove()  # the pool holds one connection: give it back to the ledger
    return found


def build_app_with_engine_settings(database_url: str, ping_idle_seconds: float):
    return create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": database_url,
                       "DB_PING_IDLE_SECONDS": ping_idle_seconds,
                       "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})


def test_an_idle_connection_the_database_dropped_is_replaced_without_an_error(database_url):
    app = build_app_with_engine_settings(database_url, ping_idle_seconds=0)
    with app.app_context():
        seed.seed_demo()
        user = accounts.create_user("reconnect", "reconnect@example.test")
        wallet = wallet_id(user)
        terminate_pooled_connection(database_url)
        assert ledger.topup(user, "GOLD", 1, "after-drop").balance_after(wallet) == 1
        assert queries.account_balance(wallet) == 1
        db.engine.dispose()


def test_a_busy_connection_the_database_dropped_fails_once_then_the_pool_reconnects(database_url,
                                                                                 monkeypatch):
    monkeypatch.setattr(ledger, "DIRECT_MAX_AMOUNT", 0)  # the engine posts: its pool is tested
    app = build_app_with_engine_settings(database_url, ping_idle_seconds=3600)
    with app.app_context():
        seed.seed_demo()
        user = accounts.create_user("reconnect", "reconnect@example.test")
        terminate_pooled_connection(database_url)
        with pytest.raises(DBAPIError) as failed:
            ledger.topup(user, "GOLD", 1, "first-after-drop")
        assert failed.value.connection_invalidated
        receipt = ledger.topup(user, "GOLD", 1, "first-after-drop")
        assert receipt.replayed is False
        assert receipt.balance_after(wallet_id(user)) == 1
        db.engine.dispose()
