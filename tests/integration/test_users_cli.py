"""`flask users ...` as an operator types it: a real process on the test database, both
backends. Scripts read the new user's id from the last line of `users create`."""
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from wallet_web import ROOT_DIR, errors, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import StatusChange, User

pytestmark = pytest.mark.both_backends


@pytest.fixture
def users_cli(app, database_url):
    """users_cli(*args) -> the finished `flask --app wsgi users *args` process."""
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "users"]
    env = {**os.environ, "DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess:
        db.session.rollback()  # let the process see what the test wrote and vice versa
        return subprocess.run(flask + list(args), cwd=ROOT_DIR, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
    return run


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def user_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(User)).scalar_one()


def recorded_changes(user_id: int) -> list[tuple]:
    db.session.rollback()
    return db.session.execute(
        select(StatusChange.previous_status, StatusChange.status, StatusChange.reason,
               StatusChange.actor).where(StatusChange.user_id == user_id)
        .order_by(StatusChange.id)).all()


def status_of(user_id: int) -> str:
    db.session.rollback()
    return queries.get_user(user_id).status


def test_users_create_prints_the_new_user_id_last(users_cli):
    created = users_cli("create", "carol", "carol@example.com", "--external-id", "game:7")

    assert created.returncode == 0, created.stderr
    user_id = int(last_line(created.stdout))
    user = queries.get_user(user_id)
    assert (user.username, user.email, user.external_id, user.status) == (
        "carol", "carol@example.com", "game:7", "active")
    wallets = [row for row in queries.user_balances(user_id) if row.kind == "wallet"]
    assert sorted(row.asset_code for row in wallets) == ["DIAMOND", "GOLD", "LOYALTY"]


def test_users_create_again_says_so_and_prints_the_same_id_last(users_cli):
    first = users_cli("create", "carol", "carol@example.com")
    before = user_count()

    again = users_cli("create", "carol", "carol@example.com")

    assert again.returncode == 0, again.stderr
    assert "already exists" in again.stdout
    assert last_line(again.stdout) == last_line(first.stdout)
    assert user_count() == before


REFUSED_CREATES = [  # (arguments, what the error names): against carol, game:7
    (("carol", "other@example.com"), "already registered"),
    (("dave", "dave@example.com", "--external-id", "game:7"), "already registered"),
    (("bad name", "bad@example.com"), "username"),
    (("u" * 65, "long@example.com"), "username"),
    (("dave", "not-an-address"), "email"),
    (("dave", "dave@example.com", "--external-id", "no spaces"), "external_id"),
]


def test_users_create_refuses_conflicts_and_bad_fields_and_creates_nothing(users_cli):
    users_cli("create", "carol", "carol@example.com", "--external-id", "game:7")
    before = user_count()

    refused = {args: users_cli("create", *args) for args, _ in REFUSED_CREATES}

    for args, says in REFUSED_CREATES:
        process = refused[args]
        assert process.returncode == 1, args
        assert says in process.stderr and "Traceback" not in process.stderr, process.stderr
        assert process.stdout == ""
    assert user_count() == before


def test_users_freeze_unfreeze_and_close_record_who_and_why(users_cli, make_user):
    user = make_user(balance=20)

    frozen = users_cli("freeze", str(user), "--reason", "chargeback 17")
    again = users_cli("freeze", str(user), "--reason", "twice")
    with pytest.raises(errors.AccountFrozen):
        ledger.spend(user, "GOLD", 1, "while-frozen")
    unfrozen = users_cli("unfreeze", str(user), "--reason", "cleared")
    ledger.spend(user, "GOLD", 20, "cash-out")
    closed = users_cli("close", str(user), "--reason", "player asked")

    assert [p.returncode for p in (frozen, again, unfrozen, closed)] == [0, 0, 0, 0]
    assert frozen.stdout.strip() == f"user {user}: frozen"
    assert again.stdout.strip() == f"user {user}: frozen (unchanged)"
    assert unfrozen.stdout.strip() == f"user {user}: active"
    assert closed.stdout.strip() == f"user {user}: closed"
    assert status_of(user) == "closed"
    assert recorded_changes(user) == [("active", "frozen", "chargeback 17", "cli"),
                                      ("frozen", "active", "cleared", "cli"),
                                      ("active", "closed", "player asked", "cli")]


def test_users_close_refuses_a_balance_an_unknown_user_and_a_missing_reason(users_cli,
                                                                            make_user):
    user = make_user(balance=5)

    holding = users_cli("close", str(user), "--reason", "player asked")
    unknown = users_cli("close", "999999", "--reason", "player asked")
    no_reason = users_cli("close", str(user))
    blank_reason = users_cli("close", str(user), "--reason", "  ")

    assert holding.returncode == 1 and "GOLD" in holding.stderr
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert blank_reason.returncode == 1 and "reason" in blank_reason.stderr
    assert all("Traceback" not in p.stderr for p in (holding, unknown, no_reason, blank_reason))
    assert status_of(user) == "active"
    assert recorded_changes(user) == []


def test_a_closed_user_cannot_be_unfrozen_from_the_cli(users_cli, make_user):
    user = make_user()
    users_cli("close", str(user), "--reason", "gone")

    refused = users_cli("unfreeze", str(user), "--reason", "come back")

    assert refused.returncode == 1 and "closed" in refused.stderr
    assert status_of(user) == "closed"
