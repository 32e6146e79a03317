"""The sweeper as it runs in its compose service (`flask --app wsgi sweep --every N`), as a
real process: it releases expired holds and expires approval requests, a SIGKILLed sweeper
loses nothing (the next one does the work, once), and it rides out a database restart."""
import signal
from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.ops.private_pg import PrivateCluster
from tests.ops.support import flask_processes, poll_until
from tests.ops.test_database_restart import prepared_database
from tests.conftest import build_app
from wallet_web import accounts, audit, holds, ledger
from wallet_web.extensions import db
from wallet_web.models import Hold, utcnow


COMMAND = ["sweep", "--every", "0.2"]  # the compose service's, faster


@pytest.fixture
def sweepers(tmp_path):
    yield from flask_processes(COMMAND, tmp_path / "sweeper.log")


def expired_holds(count: int, user: int) -> list[int]:
    placed = [holds.place(user, "GOLD", 10, f"h{n}-{utcnow().timestamp()}").hold.id
              for n in range(count)]
    db.session.execute(update(Hold).where(Hold.id.in_(placed))
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    return placed


def statuses(placed: list[int]) -> set[str]:
    db.session.rollback()
    return {db.session.get(Hold, hold_id).status for hold_id in placed}


def test_a_sweeper_releases_expired_holds_and_a_killed_one_loses_nothing(
        app, make_user, database_url, sweepers, tmp_path):
    user = make_user(balance=1000)
    first = expired_holds(5, user)
    sweeper = sweepers(database_url)
    poll_until(lambda: statuses(first) == {"expired"}, "the sweeper did not release the holds")

    assert sweeper.stop(signal.SIGKILL) == -signal.SIGKILL
    second = expired_holds(5, user)
    sweepers(database_url)
    poll_until(lambda: statuses(second) == {"expired"}, "a new sweeper did not take over")

    db.session.rollback()
    assert ledger.topup(user, "GOLD", 1, "probe").id  # nothing is left locked
    assert audit.verify().ok
    gold = next(a.balance for a in accounts_of(user) if a.asset_code == "GOLD")
    assert gold == 1001


def accounts_of(user: int):
    from wallet_web import queries
    db.session.rollback()
    return queries.user_balances(user)


def test_a_sweeper_stops_cleanly_on_sigterm(app, database_url, sweepers, tmp_path):
    sweeper = sweepers(database_url)
    poll_until(lambda: "sweeper started" in (tmp_path / "sweeper.log").read_text(),
               "the sweeper did not start")

    assert sweeper.stop(signal.SIGTERM) == 0
    assert "sweeper stopped" in (tmp_path / "sweeper.log").read_text()


def test_a_sweeper_rides_out_a_database_restart(sweepers, tmp_path):
    cluster = PrivateCluster().init()
    try:
        url = cluster.url("sweeper")
        prepared_database(url)
        app = build_app(url)
        sweeper = sweepers(url)
        cluster.stop()
        poll_until(lambda: "sweep failed" in (tmp_path / "sweeper.log").read_text(),
                   "the sweeper did not notice the database going away")
        cluster.start()
        with app.app_context():
            user = accounts.create_user("after", "after@example.test")
            ledger.topup(user, "GOLD", 100, "t")
            placed = expired_holds(3, user)
            poll_until(lambda: statuses(placed) == {"expired"},
                       "the sweeper did not recover after the restart")
            db.engine.dispose()
        assert sweeper.process.poll() is None
    finally:
        cluster.destroy()
