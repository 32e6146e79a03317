"""Shared fixtures: a real database per test (PostgreSQL; SQLite where a test asks for both).

PostgreSQL: the schema is built once per session by the migrations, and every test starts
from empty tables (TRUNCATE) plus the base seed, because the ledger commits on its own
connections and a wrapping rollback could not undo it.
SQLite: every test gets a copy of a migrated template file.
"""
import os
import shutil

import psycopg
import pytest
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.engine import make_url

import seed
from wallet_web import accounts, create_app, ledger
from wallet_web.config import TestConfig
from wallet_web.extensions import db



def _suite_database_url() -> str:
    """TEST_DATABASE_URL, or under pytest-xdist one database per worker (<name>_gw0, ...),
    exported so that servers the tests start find the same one."""
    url = os.environ.get("TEST_DATABASE_URL", TestConfig.SQLALCHEMY_DATABASE_URI)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        parsed = make_url(url)
        url = parsed.set(database=f"{parsed.database}_{worker}").render_as_string(hide_password=False)
        os.environ["TEST_DATABASE_URL"] = url
    return url


PG_URL = _suite_database_url()
TABLES = ("postings, transactions, balance_shards, accounts, users, assets, api_keys, operators, "
          "operator_sessions, login_throttles, status_changes, reason_codes, policies, "
          "operator_limits, movement_requests, audit_events, bulk_grant_outcomes, bulk_grant_rows, "
          "bulk_grant_totals, bulk_grants, events, webhook_deliveries, webhook_endpoints, "
          "chain_entries, volume_days")

RESET_CHAIN_HEADS = ("UPDATE chain_heads SET seq = 0, hash = repeat('0', 64), after_xid = -1, "
                     "after_id = 0, sealed_at = NULL")
RESET_VOLUME_POSITION = "UPDATE volume_position SET after_xid = -1, after_id = 0, rolled_at = NULL"


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        backends = ["postgresql", "sqlite"] if marked("both_backends") else ["postgresql"]
        metafunc.parametrize("backend", ["sqlite"] if marked("sqlite_only") else backends)


def pytest_configure(config):
    config.addinivalue_line("markers", "both_backends: run on PostgreSQL and on SQLite")
    config.addinivalue_line("markers", "sqlite_only: run on SQLite only")


def ensure_database(url: str) -> None:
    parsed = make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin.replace("+psycopg", ""), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


def build_app(url: str):
    return create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url})


def _config_dict() -> dict:
    return {key: getattr(TestConfig, key) for key in dir(TestConfig) if key.isupper()}


@pytest.fixture(scope="session")
def pg_url():
    ensure_database(PG_URL)
    app = build_app(PG_URL)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade()
        db.engine.dispose()
    return PG_URL


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    app = build_app(f"sqlite:///{path}")
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return path


@pytest.fixture
def database_url(backend, request, tmp_path):
    if backend == "sqlite":
        path = tmp_path / "wallet.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_url")
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        conn.execute(RESET_CHAIN_HEADS)
        conn.execute(RESET_VOLUME_POSITION)
    return url


@pytest.fixture
def app(database_url):
    app = build_app(database_url)
    with app.app_context():
        seed.seed_demo()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_user(app):
    """make_user(balance=0, asset="GOLD") -> user id of a new user with that balance."""
    counter = iter(range(1, 10**6))

    def make(balance: int = 0, asset: str = "GOLD", name: str | None = None) -> int:
        name = name or f"user{next(counter)}"
        user_id = accounts.create_user(name, f"{name}@example.test")
        if balance:
            ledger.topup(user_id, asset, balance, f"fixture:{name}:{asset}")
        return user_id

    return make


@pytest.fixture
def wallet_of(app):
    """wallet_of(user_id, asset="GOLD") -> the wallet's account id."""
    from wallet_web.models import Account

    def find(user_id: int, asset: str = "GOLD") -> int:
        return db.session.execute(
            db.select(Account.id).filter_by(user_id=user_id, asset_code=asset, kind="wallet")
        ).scalar_one()

    return find
