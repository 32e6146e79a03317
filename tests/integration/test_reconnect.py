"""Pooled connections that the database dropped: replaced on checkout when idle, and after
one failed statement when busy (the pool is invalidated as a whole)."""
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError

import seed
from tests.conftest import _config_dict
from wallet_web import create_app, ledger
from wallet_web.extensions import db


def terminate_pooled_connection(url: str) -> None:
    with db.engine.connect() as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def build_app_with_engine_settings(database_url: str, ping_idle_seconds: float):
    return create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": database_url,
                       "DB_PING_IDLE_SECONDS": ping_idle_seconds,
                       "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0}})


def test_an_idle_connection_the_database_dropped_is_replaced_without_an_error(database_url):
    app = build_app_with_engine_settings(database_url, ping_idle_seconds=0)
    with app.app_context():
        seed.seed_demo()
        terminate_pooled_connection(database_url)
        assert ledger.topup(2, "GOLD", 1, "after-drop").balance_after is not None
        db.engine.dispose()


def test_a_busy_connection_the_database_dropped_fails_once_then_the_pool_reconnects(database_url):
    app = build_app_with_engine_settings(database_url, ping_idle_seconds=3600)
    with app.app_context():
        seed.seed_demo()
        terminate_pooled_connection(database_url)
        with pytest.raises(DBAPIError) as failed:
            ledger.topup(2, "GOLD", 1, "first-after-drop")
        assert failed.value.connection_invalidated
        assert ledger.topup(2, "GOLD", 1, "first-after-drop").replayed is False
        db.engine.dispose()
