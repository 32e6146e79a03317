"""`flask --app wsgi bulk post FILE` as support staff type it: the preview alone moves nothing,
--yes submits it like the dashboard (posted here below the thresholds, sent for approval at
them), a file with problems or an unknown operator exits non-zero having moved nothing.
Through Flask's CLI runner on the test database; test_bulk.py runs it as a real process (and
SIGKILLs it half-way)."""
import pytest
from sqlalchemy import func, select

from tests.bulk_files import csv_file, grant_file, moved_by, person, players
from wallet_web import approvals, assets, bulk, controls, ledger
from wallet_web.extensions import db
from wallet_web.limits import BALANCE_CEILING
from wallet_web.models import BulkGrant, Operator, Transaction

REASON = ["--reason-code", "compensation", "--reason", "Outage of May 1st"]


@pytest.fixture
def maker(app):
    return person("sam")


@pytest.fixture
def post(app, maker, tmp_path):
    """post(data, *options, operator="sam") -> the result of `flask bulk post FILE ...`."""
    runner = app.test_cli_runner()

    def run(data: bytes, *options: str, operator: str = "sam"):
        path = tmp_path / "outage.csv"
        path.write_bytes(data)
        result = runner.invoke(args=["bulk", "post", str(path), *REASON, "--operator", operator,
                                     *options])
        db.session.rollback()  # read what the command committed
        return result
    return run


def stored() -> list:
    db.session.rollback()
    return db.session.execute(select(BulkGrant.id, BulkGrant.status).order_by(BulkGrant.id)).all()


def transactions() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Transaction)).scalar_one()


def test_without_yes_it_shows_the_preview_and_moves_nothing(post):
    users = players(3)

    result = post(grant_file(users, amount=100) + b"player0,DIAMOND,7,gems\r\n")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("outage.csv: 4 row(s), users by username, sha256 ")
    assert lines[1:4] == ["  DIAMOND: 1 row(s), total 7 (below the approval threshold)",
                          "  GOLD: 3 row(s), total 300 (below the approval threshold)",
                          "  largest: line 2: player0 100 GOLD"]
    assert lines[-1] == ("Nothing moved (draft bulk grant #1). "
                         "Run again with --yes to submit it.")
    assert stored() == [(1, "draft")]
    assert moved_by(bulk.get(1).file_sha256) == 0


def test_with_yes_below_the_thresholds_it_posts_and_prints_the_counts(post, maker):
    users = players(3)

    result = post(grant_file(users, amount=100), "--yes", "--kind", "topup", "--ticket", "SUP-9")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "bulk grant #1 done: 3 posted, 0 already posted, 0 refused")
    assert result.stderr.splitlines()[-1] == "3 of 3 rows done"
    grant = bulk.get(1)
    assert (grant.status, grant.posted, grant.kind, grant.ticket, grant.maker) == (
        "done", 3, "topup", "SUP-9", "operator:sam")
    assert moved_by(grant.file_sha256) == 3
    assert approvals.used_today(maker.id, "GOLD") == 300  # counted as a dashboard grant is


def test_with_yes_at_a_threshold_it_is_sent_for_approval_and_moves_nothing(post):
    before = transactions()

    result = post(grant_file(players(2), amount=5_000), "--yes")  # 10,000 GOLD: the threshold

    assert result.exit_code == 0, result.output
    assert "  GOLD: 2 row(s), total 10,000 (needs approval)" in result.stdout
    assert result.stdout.splitlines()[-1] == "Sent for approval: bulk grant #1 (/bulk/1)."
    assert stored() == [(1, "pending")] and transactions() == before


def test_rows_the_ledger_refuses_are_counted_and_the_exit_is_non_zero(post):
    controls.set_policy("GOLD", approval_threshold=BALANCE_CEILING,
                        operator_daily_limit=BALANCE_CEILING)
    users = players(2)
    ledger.topup(users[1].id, "GOLD", 900, "already-rich")
    assets.set_limits("GOLD", max_amount=1000, max_balance=1000)
    data = csv_file(f"{users[0].name},GOLD,100,fine", f"{users[1].name},GOLD,500,too much")

    result = post(data, "--yes")  # 900 + 500: above GOLD's largest balance, refused at posting

    assert result.exit_code == 1
    assert result.stdout.splitlines()[-1] == (
        "bulk grant #1 done: 1 posted, 0 already posted, 1 refused")
    assert moved_by(bulk.get(1).file_sha256) == 1


def test_a_file_with_problems_or_that_cannot_be_read_exits_non_zero_and_stores_nothing(post):
    players(1)
    before = transactions()

    problems = post(csv_file("player0,GOLD,10,ok", "nobody,GOLD,10,who?"), "--yes")
    unreadable = post(b"username,asset,amount\r\nplayer0,GOLD,\xe9\r\n", "--yes")

    assert problems.exit_code == 1
    assert "  line 3: no user has username 'nobody'" in problems.stderr
    assert "Error: 1 row(s) cannot be granted: nothing moved" in problems.stderr
    assert unreadable.exit_code == 1
    assert unreadable.stderr.startswith("Error: the file is not UTF-8 text (line 2")
    assert stored() == [] and transactions() == before


def test_only_an_active_operator_with_the_operator_role_may_post(post):
    person("vera", role="viewer")
    ivan = person("ivan")
    db.session.get(Operator, ivan.id).is_active = False
    db.session.commit()
    data = grant_file(players(1))

    for operator in ("ghost", "vera", "ivan"):
        result = post(data, "--yes", operator=operator)
        assert result.exit_code == 1
        assert f"Error: no active operator '{operator}' with the operator role" in result.stderr
    assert stored() == []


def test_the_same_file_again_is_refused_and_moves_nothing_twice(post):
    data = grant_file(players(2), amount=100)
    assert post(data, "--yes").exit_code == 0

    again = post(data, "--yes")

    assert again.exit_code == 1
    assert "  this file was already submitted as bulk grant #1 (done)" in again.stdout
    assert ("Error: this file was already submitted as bulk grant #1 (done): nothing was sent "
            "again") in again.stderr
    assert stored() == [(1, "done"), (2, "draft")]
    assert moved_by(bulk.get(1).file_sha256) == 2
