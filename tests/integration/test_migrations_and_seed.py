"""Migrations build the schema on both backends; seed and `ledger verify` as commands."""
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

import seed
from wallet_web import audit, ledger, operator_sessions, operators, queries
from wallet_web.extensions import db
from wallet_web.models import Account, Posting, Transaction, User

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def run(args, database_url, **env):
    environment = {**os.environ, "DATABASE_URL": database_url, **env}
    return subprocess.run(args, cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.both_backends
def test_models_match_the_migrations(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _built_on(conn)})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def _built_on(conn):
    """Alembic ignores ddl_if: an index or key the models build on one dialect only is
    compared on that dialect only."""
    def include(item, _name, _type, _reflected, _compare_to):
        condition = getattr(item, "_ddl_if", None)
        return condition is None or condition.dialect in (None, conn.dialect.name)
    return include


@pytest.mark.both_backends
def test_migrations_go_down_to_empty_and_up_again(app):
    db.session.remove()
    downgrade(revision="base")
    with db.engine.connect() as conn:
        assert "postings" not in db.inspect(conn).get_table_names()
    upgrade()
    with db.engine.connect() as conn:
        assert "postings" in db.inspect(conn).get_table_names()


@pytest.mark.both_backends
def test_seed_creates_system_alice_and_bob_and_running_it_again_changes_nothing(app):
    def snapshot():
        counts = [db.session.execute(select(func.count()).select_from(m)).scalar_one()
                  for m in (User, Account, Transaction, Posting)]
        return counts, db.session.execute(select(User.id, User.username).order_by(User.id)).all()

    before = snapshot()
    seed.seed_demo()
    assert snapshot() == before
    assert before[1] == [(1, "system"), (2, "alice"), (3, "bob")]
    wallet = {name: db.session.execute(select(Account.id).join(User).where(
        User.username == name, Account.asset_code == "GOLD", Account.kind == "wallet")).scalar_one()
        for name in ("alice", "bob")}
    assert queries.account_balance(wallet["alice"]) == 100
    assert queries.account_balance(wallet["bob"]) == 50


def test_seed_adds_synthetic_users_with_a_wallet_per_asset(app):
    seed.seed_synthetic_users(120, batch=50)
    seed.seed_synthetic_users(5)
    assert queries.count_users_named("load-") == 125
    wallets = db.session.execute(select(func.count()).select_from(Account).join(User).where(
        User.username.startswith("load-"))).scalar_one()
    assert wallets == 125 * 3


def test_the_container_commands_migrate_seed_and_verify_a_new_sqlite_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    assert run(flask + ["db", "upgrade"], url).returncode == 0
    seeded = run([sys.executable, "seed.py", "--users", "10"], url)
    assert seeded.returncode == 0, seeded.stderr
    assert "added 10 synthetic users" in seeded.stdout
    verified = run(flask + ["ledger", "verify"], url)
    assert verified.returncode == 0 and "ledger verified" in verified.stdout


def test_ledger_verify_exits_non_zero_on_a_broken_ledger(app, database_url):
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET balance = balance + 5 WHERE id = "
                          "(SELECT MAX(id) FROM accounts WHERE kind = 'wallet')"))
    result = run([sys.executable, "-m", "flask", "--app", "wsgi", "ledger", "verify"], database_url)
    assert result.returncode == 1
    assert "FAIL  every cached balance equals the sum of its postings" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(database_url):
    result = run([sys.executable, "-c", "import wsgi"], database_url,
                 WALLET_ENV="production", SECRET_KEY="")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


@pytest.mark.both_backends
def test_the_money_limits_migration_keeps_an_existing_ledger(app, make_user, wallet_of):
    user = make_user(balance=75)
    db.session.remove()
    downgrade(revision="0002")
    upgrade()
    assert queries.account_balance(wallet_of(user)) == 75
    assert audit.verify().ok
    with pytest.raises(DBAPIError, match="append-only"):  # the rebuilt table keeps its triggers
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM postings"))


@pytest.mark.both_backends
def test_the_sessions_migration_keeps_operators_and_what_they_did(app, make_user, wallet_of):
    operator = operators.create_operator("olga", "long enough pass", "operator")
    operator_id = operator.id
    user = make_user()
    ledger.topup(user, "GOLD", 5, "by-olga", actor=ledger.Actor("operator:olga", operator_id))
    operator_sessions.start(operator_id)
    db.session.remove()
    downgrade(revision="0003")
    with db.engine.connect() as conn:
        assert "operator_sessions" not in db.inspect(conn).get_table_names()
    upgrade()
    assert [op.username for op in operators.list_operators()] == ["olga"]
    assert queries.account_balance(wallet_of(user)) == 5
    assert db.session.execute(select(Transaction.operator_id).where(
        Transaction.reference_id == "by-olga")).scalar_one() == operator_id
