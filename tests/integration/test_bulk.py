"""Bulk grants at the service level (bulk.py) on a real database: a file's preview and its
draft, submitting it below the thresholds (posted at once, counted against the maker's day) or
at them (four-eyes), posting a thousand rows per ledger batch, and every way a file could move
twice: the same file again, two posters at once, a poster stopped or SIGKILLed half-way and
resumed by the sweeper. Tests end on exact balances, the count of the file's ledger
transactions (references bulk:<hash>:<line>) and `ledger verify`."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from tests.bulk_files import (
    HANG_GUARD_SECONDS,
    csv_file,
    grant_file,
    moved_by,
    person,
    players,
    wait_for,
)
from tests.threads import run_at_once
from wallet_web import ROOT_DIR, accounts, approvals, audit, bulk, controls, errors, queries
from wallet_web.approvals import Intent
from wallet_web.extensions import db
from wallet_web.models import Account, AuditEvent, BulkGrant, Transaction, utcnow

grants = BulkGrant.__table__
THRESHOLD = 10_000  # the default approval threshold of every asset
TICKET = "SUP-4711"
BY_ID = "user_id,asset,amount,reason"


def gold(user, asset: str = "GOLD") -> int:
    """The wallet balance of a user id or a Player."""
    user_id = getattr(user, "id", user)
    db.session.rollback()  # read what the posters committed
    return next(a.balance for a in queries.user_balances(user_id)
                if a.asset_code == asset and a.kind == "wallet")


def total_gold(users) -> int:
    db.session.rollback()
    return db.session.execute(select(func.sum(Account.balance)).where(
        Account.kind == "wallet", Account.asset_code == "GOLD",
        Account.user_id.in_([user.id for user in users]))).scalar_one()


def verified() -> bool:
    report = audit.verify()
    return report.ok or print(report.lines())


def transactions() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Transaction)).scalar_one()


def stored_grants() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(BulkGrant)).scalar_one()


def events(action: str, outcome: str = "done") -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.outcome == outcome).order_by(AuditEvent.id)))


def draft(data: bytes, maker, kind: str = "bonus") -> int:
    found = bulk.preview(data, "outage.csv", kind, maker)
    assert found.problems == () and found.grant_id is not None, found.problems
    return found.grant_id


def submit(grant_id: int, maker, **fields) -> str:
    return bulk.submit(grant_id, maker, fields.pop("reason_code", "compensation"),
                       fields.pop("ticket", TICKET),
                       fields.pop("description", "Compensation for the outage"), **fields)


def posted_now(data: bytes, maker) -> int:
    """A grant below every threshold, submitted and posted to the end on this thread."""
    grant_id = draft(data, maker)
    assert submit(grant_id, maker, in_background=False) == "posting"
    assert bulk.run(grant_id) is True
    return grant_id


def sent_for_approval(data: bytes, maker) -> int:
    grant_id = draft(data, maker)
    assert submit(grant_id, maker) == "pending"
    return grant_id


def set_grant(grant_id: int, **values) -> None:
    """Write what time (or a dead process) would have left behind."""
    with db.engine.begin() as conn:
        conn.execute(update(grants).where(grants.c.id == grant_id).values(**values))


def age_heartbeat(grant_id: int) -> None:
    """A dead poster's grant once STALE_AFTER has passed: its heartbeat is old."""
    set_grant(grant_id, heartbeat_at=utcnow() - 2 * bulk.STALE_AFTER)


@pytest.fixture
def maker(app):
    return person("maker")


@pytest.fixture
def checker(app):
    return person("checker", approver=True)


# ---------------------------------------------------------------- preview


@pytest.mark.both_backends
def test_a_clean_file_becomes_a_draft_with_its_rows_totals_and_largest_and_moves_nothing(
        app, make_user, maker):
    ann, ben, cat = make_user(name="ann"), make_user(name="ben"), make_user(name="cat")
    data = csv_file("ann,GOLD,300,Outage", "ben,GOLD,700,", "cat,DIAMOND,5,Outage",
                    "ann,GOLD,300,Second outage")
    before = transactions()

    found = bulk.preview(data, "C:\\Users\\sam\\outage.csv", "bonus", maker)

    assert found.problems == () and found.grant_id is not None and found.earlier == ()
    assert (found.filename, found.kind, found.user_column, found.rows) == (
        "outage.csv", "bonus", "username", 4)
    assert [(t.asset, t.rows, t.total, t.needs_approval) for t in found.totals] == [
        ("DIAMOND", 1, 5, False), ("GOLD", 3, 1_300, False)]
    assert [(row.line, row.amount) for row in found.largest] == [(3, 700), (2, 300), (5, 300),
                                                                  (4, 5)]
    grant = bulk.get(found.grant_id)
    assert (grant.status, grant.rows_total, grant.rows_done, grant.maker_id, grant.file_sha256,
            grant.needs_approval) == ("draft", 4, 0, maker.id, found.sha256, False)
    assert [(r.line, r.user_id, r.user_ref, r.asset_code, r.amount, r.reason, r.status)
            for r in bulk.outcomes(found.grant_id)] == [
        (2, ann, "ann", "GOLD", 300, "Outage", None), (3, ben, "ben", "GOLD", 700, "", None),
        (4, cat, "cat", "DIAMOND", 5, "Outage", None),
        (5, ann, "ann", "GOLD", 300, "Second outage", None)]
    assert [(t.asset_code, t.rows, t.total) for t in bulk.totals_of(found.grant_id)] == [
        ("DIAMOND", 1, 5), ("GOLD", 3, 1_300)]
    assert transactions() == before and moved_by(found.sha256) == 0 and gold(ann) == 0
    [uploaded] = events("bulk.uploaded")
    assert (uploaded.actor, uploaded.details["rows"], uploaded.details["sha256"]) == (
        "operator:maker", 4, found.sha256)


def test_a_file_may_name_players_by_user_id_with_leading_zeros_or_by_external_id(
        app, make_user, maker):
    """user_id is the first column the upload page names; bulk_csv reads 0042 as user 42."""
    ann, ben = make_user(name="ann"), make_user(name="ben")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE users SET external_id = 'steam:42' WHERE id = :id"), {"id": ben})

    by_id = bulk.preview(csv_file(f"{ann},GOLD,10,", f"000{ben},GOLD,20,", header=BY_ID),
                         "ids.csv", "bonus", maker)
    by_external = bulk.preview(csv_file("steam:42,GOLD,30", header="external_id,asset,amount"),
                               "external.csv", "topup", maker)

    assert (by_id.problems, by_id.user_column) == ((), "user_id")
    assert [(r.user_id, r.amount) for r in bulk.outcomes(by_id.grant_id)] == [(ann, 10),
                                                                             (ben, 20)]
    assert (by_external.problems, by_external.user_column) == ((), "external_id")
    assert [(r.user_id, r.user_ref) for r in bulk.outcomes(by_external.grant_id)] == [
        (ben, "steam:42")]


def test_a_file_with_problems_is_reported_line_by_line_and_nothing_is_stored(app, make_user,
                                                                             maker):
    make_user(name="ann")
    accounts.change_status(make_user(name="gone"), "close", "Left the game")
    data = csv_file("ann,GOLD,100,ok", "nobody,GOLD,100,nobody", "gone,GOLD,100,closed",
                    "ann,GEMS,100,no such asset", "ann,GOLD,ten,words", "ann,GOLD,100,ok",
                    "=HYPERLINK(x),GOLD,100,formula")

    found = bulk.preview(data, "dirty.csv", "bonus", maker)

    assert found.grant_id is None and found.rows == 7
    assert [(problem.line, problem.message) for problem in found.problems] == [
        (3, "no user has username 'nobody'"),
        (4, "user 'gone' is closed"),
        (5, "no asset 'GEMS'"),
        (6, "amount must be a whole number of the asset's smallest unit, like 250 (not 'ten')"),
        (7, "repeats line 2 (same player, asset, amount and reason): delete one, or give each "
            "its own reason if both are meant"),
        (8, "username looks like a spreadsheet formula ('=HYPERLINK(x)'): a value may not start "
            "with = + - @ or a tab")]
    assert stored_grants() == 0 and events("bulk.uploaded") == []


def test_the_house_system_user_is_no_player_to_grant_to(app, maker):
    """`system` owns the house accounts and has no wallet: the users pages leave it out, and
    a grant to it can only be refused when posted."""
    players(1)

    found = bulk.preview(csv_file("player0,GOLD,10,ok", "system,GOLD,10,house"), "house.csv",
                         "bonus", maker)

    assert [(problem.line, problem.message) for problem in found.problems] == [
        (3, "no user has username 'system'")]
    assert found.grant_id is None and stored_grants() == 0


def test_a_file_that_cannot_be_read_or_a_kind_that_is_no_grant_is_refused_whole(app, maker):
    players(1, prefix="ann")
    unreadable = {
        b"": "the file is empty",
        b"\xff\xfeu\x00s\x00": "UTF-16",
        b"username,asset,amount\r\nann0,GOLD,\xe9\r\n": "not UTF-8",
        b"who,asset,amount\r\nann0,GOLD,1\r\n": "unknown column 'who'",
        b"username,asset\r\nann0,GOLD\r\n": "the column amount is missing",
        b"username,asset,amount\r\n": "no rows",
        b"PK\x03\x04workbook": "Excel workbook",
    }
    for data, says in unreadable.items():
        with pytest.raises(errors.InvalidUpload) as refused:
            bulk.preview(data, "bad.csv", "bonus", maker)
        assert says in refused.value.message, data
    with pytest.raises(errors.InvalidRequest):
        bulk.preview(b"username,asset,amount\r\nann0,GOLD,1\r\n", "x.csv", "spend", maker)
    assert stored_grants() == 0


def test_an_amount_no_wallet_may_hold_is_a_problem_of_its_row_not_a_crash(app, make_user,
                                                                          maker):
    """The parser takes any bigint; bulk_grant_rows.amount is CHECKed to BALANCE_CEILING."""
    make_user(name="ann"), make_user(name="ben")
    data = csv_file("ann,GOLD,10,fine", f"ben,GOLD,{10**16},far too much")

    found = bulk.preview(data, "huge.csv", "bonus", maker)

    assert found.grant_id is None
    assert [problem.line for problem in found.problems] == [3]
    assert stored_grants() == 0


# ---------------------------------------------------------------- below the thresholds


@pytest.mark.both_backends
def test_below_every_threshold_the_grant_posts_each_row_once_in_the_makers_name(
        app, make_user, maker):
    ann, ben = make_user(name="ann"), make_user(name="ben")
    grant_id = draft(csv_file("ann,GOLD,400,Outage May 1st", "ben,GOLD,600,", "ben,DIAMOND,3,"),
                     maker)

    assert submit(grant_id, maker, in_background=False) == "posting"
    assert bulk.run(grant_id) is True

    grant = bulk.get(grant_id)
    assert (grant.status, grant.rows_done, grant.posted, grant.replayed, grant.refused) == (
        "done", 3, 3, 0, 0)
    assert grant.finished_at is not None and grant.needs_approval is False
    assert (gold(ann), gold(ben), gold(ben, "DIAMOND")) == (400, 600, 3)
    assert moved_by(grant.file_sha256) == 3
    rows = list(bulk.outcomes(grant_id))
    assert [row.status for row in rows] == ["posted"] * 3
    first, second = (queries.get_transaction(row.transaction_id) for row in rows[:2])
    assert (first.kind, first.reference_id, first.description) == (
        "bonus", f"bulk:{grant.file_sha256[:40]}:2", "Outage May 1st")
    assert (first.actor, first.operator_id) == ("operator:maker", maker.id)
    assert first.meta == {"reason_code": "compensation", "ticket": TICKET,
                          "bulk_grant": str(grant_id)}
    assert second.description == "Compensation for the outage"  # the row has no reason
    assert [e.object_id for e in events("bulk.submitted")] == [str(grant_id)]
    assert [e.object_id for e in events("bulk.finished")] == [str(grant_id)]
    assert verified()


def test_submitted_without_a_caller_to_post_it_the_grant_posts_on_a_thread(app, maker):
    users = players(30)
    grant_id = draft(grant_file(users, amount=25), maker, kind="topup")

    assert submit(grant_id, maker) == "posting"

    grant = wait_for(grant_id)
    assert (grant.rows_done, grant.posted) == (30, 30)
    assert [gold(user) for user in users] == [25] * 30
    assert queries.get_transaction(next(bulk.outcomes(grant_id)).transaction_id).kind == "topup"
    assert verified()


def test_more_rows_than_a_batch_post_a_batch_at_a_time_with_the_progress_after_each(app, maker):
    users = players(1_001)
    grant_id = draft(grant_file(users, amount=1), maker)
    submit(grant_id, maker, in_background=False)
    seen = []

    bulk.run(grant_id, on_progress=lambda grant: seen.append((grant.rows_done, grant.posted)))

    assert seen == [(1_000, 1_000), (1_001, 1_001)]
    assert moved_by(bulk.get(grant_id).file_sha256) == 1_001 and total_gold(users) == 1_001
    assert verified()


def test_a_row_the_ledger_refuses_is_listed_with_its_error_and_the_others_post(app, maker):
    ann, ben, cat = players(3)
    grant_id = draft(grant_file([ann, ben, cat], amount=50), maker)
    accounts.change_status(ben.id, "close", "Closed after the preview")

    submit(grant_id, maker, in_background=False)
    bulk.run(grant_id)

    grant = bulk.get(grant_id)
    assert (grant.status, grant.posted, grant.refused, grant.rows_done) == ("done", 2, 1, 3)
    [refused] = bulk.outcomes(grant_id, refused_only=True).all()
    assert (refused.line, refused.user_id, refused.status, refused.transaction_id) == (
        3, ben.id, "refused", None)
    assert refused.error_code and "closed" in refused.message
    assert (gold(ann), gold(ben), gold(cat)) == (50, 0, 50)
    assert moved_by(grant.file_sha256) == 2 and verified()


def test_a_below_threshold_grant_counts_against_the_makers_daily_limit(app, make_user, maker):
    controls.set_operator_limit(maker.id, "GOLD", 5_000)
    customer = make_user(name="carla")
    over = draft(grant_file(players(6, prefix="big"), amount=1_000), maker)  # 6,000 > 5,000
    with pytest.raises(errors.DailyLimitExceeded):
        submit(over, maker)
    assert bulk.get(over).status == "draft" and moved_by(bulk.get(over).file_sha256) == 0
    assert [e.details["error"] for e in events("bulk.refused", "refused")] == [
        "daily_limit_exceeded"]

    posted_now(grant_file(players(3), amount=1_000), maker)  # 3,000 of 5,000 used

    assert approvals.used_today(maker.id, "GOLD") == 3_000
    with pytest.raises(errors.DailyLimitExceeded) as refused:
        approvals.submit(Intent("topup", "after-the-grant", "goodwill", "Goodwill", "GOLD", 2_500,
                                user_id=customer), maker)
    assert refused.value.details["left"] == 2_000 and gold(customer) == 0
    outcome = approvals.submit(Intent("topup", "within", "goodwill", "Goodwill", "GOLD", 2_000,
                                      user_id=customer), maker)
    assert outcome.status == "posted" and gold(customer) == 2_000


def test_two_grants_of_one_maker_submitted_at_once_are_counted_one_after_the_other(app, maker):
    controls.set_operator_limit(maker.id, "GOLD", 5_000)
    drafts = [draft(grant_file(players(3, prefix=prefix), amount=1_000), maker)
              for prefix in ("north", "south")]  # 3,000 each: together over the limit

    answers = run_at_once(app, [lambda grant_id=grant_id: submit(grant_id, maker,
                                                                 in_background=False)
                                for grant_id in drafts])

    assert sorted(type(answer).__name__ for answer in answers) == ["DailyLimitExceeded", "str"]
    assert sorted(bulk.get(grant_id).status for grant_id in drafts) == ["draft", "posting"]
    assert approvals.used_today(maker.id, "GOLD") == 3_000
    [posting] = [grant_id for grant_id in drafts if bulk.get(grant_id).status == "posting"]
    assert bulk.run(posting) is True and bulk.get(posting).posted == 3


def test_only_the_maker_submits_a_draft_once_with_a_reason_code_a_reason_and_a_valid_ticket(
        app, maker):
    grant_id = draft(grant_file(players(2)), maker)
    refusals = [({"reason_code": "not_a_code"}, errors.InvalidReasonCode),
                ({"description": "   "}, errors.InvalidRequest),
                ({"ticket": "not a ticket!"}, errors.InvalidTicket)]

    with pytest.raises(errors.NotYourUpload):
        submit(grant_id, person("other"))
    for fields, error in refusals:
        with pytest.raises(error):
            submit(grant_id, maker, **fields)
    assert bulk.get(grant_id).status == "draft"
    assert submit(grant_id, maker, ticket=None, in_background=False) == "posting"
    with pytest.raises(errors.RequestDecided):
        submit(grant_id, maker, in_background=False)
    bulk.run(grant_id)
    assert bulk.get(grant_id).posted == 2
    assert "ticket" not in queries.get_transaction(
        next(bulk.outcomes(grant_id)).transaction_id).meta
    assert len(events("bulk.refused", "refused")) == 5


# ---------------------------------------------------------------- four eyes


def test_at_a_threshold_the_grant_waits_for_another_approver_and_moves_nothing(app, maker,
                                                                               checker):
    users = players(4)

    grant_id = sent_for_approval(grant_file(users, amount=THRESHOLD // 4), maker)  # == threshold

    grant = bulk.get(grant_id)
    assert (grant.status, grant.needs_approval) == ("pending", True)
    assert grant.expires_at > grant.submitted_at
    assert [g.id for g in bulk.pending()] == [grant_id]
    assert bulk.pending_count(decider_id=checker.id) == 1
    assert bulk.pending_count(decider_id=maker.id) == 0  # not theirs to decide
    assert moved_by(grant.file_sha256) == 0 and [gold(u) for u in users] == [0] * 4
    assert approvals.used_today(maker.id, "GOLD") == 0  # a grant with a checker does not count
    assert [e.object_id for e in events("approval.requested")] == [str(grant_id)]


def test_another_approver_approves_and_every_row_posts_once_with_the_checker(app, maker,
                                                                            checker):
    users = players(5)
    grant_id = sent_for_approval(grant_file(users, amount=3_000), maker)

    bulk.approve(grant_id, checker, "Outage confirmed in SUP-4711")

    grant = wait_for(grant_id)
    assert (grant.checker, grant.checker_id, grant.decision_reason) == (
        "operator:checker", checker.id, "Outage confirmed in SUP-4711")
    assert (grant.posted, grant.refused) == (5, 0)
    assert [gold(user) for user in users] == [3_000] * 5
    tx = queries.get_transaction(next(bulk.outcomes(grant_id)).transaction_id)
    assert (tx.actor, tx.operator_id) == ("operator:maker", maker.id)
    assert tx.meta == {"reason_code": "compensation", "ticket": TICKET,
                       "bulk_grant": str(grant_id), "checker": "operator:checker",
                       "checker_id": str(checker.id)}
    with pytest.raises(errors.RequestDecided):
        bulk.approve(grant_id, person("ann", approver=True), "Again")
    assert moved_by(grant.file_sha256) == 5 and approvals.used_today(maker.id, "GOLD") == 0
    assert verified()


def test_two_approvers_at_the_same_instant_post_the_grant_once(app, maker):
    users = players(5)
    grant_id = sent_for_approval(grant_file(users, amount=3_000), maker)
    deciders = [person("ann", approver=True), person("bob", approver=True)]

    answers = run_at_once(app, [lambda who=who: bulk.approve(grant_id, who, "Mine")
                                for who in deciders])

    assert sorted(type(answer).__name__ for answer in answers) == ["NoneType", "RequestDecided"]
    grant = wait_for(grant_id)
    assert grant.posted == 5 and moved_by(grant.file_sha256) == 5
    assert [gold(user) for user in users] == [3_000] * 5 and verified()


def test_the_maker_never_approves_their_own_grant_nor_does_an_operator_without_the_right(
        app, checker):
    maker = person("mia", approver=True)  # an approver, of others' grants
    grant_id = sent_for_approval(grant_file(players(2), amount=THRESHOLD), maker)

    with pytest.raises(errors.SelfApproval):
        bulk.approve(grant_id, maker, "Looks fine to me")
    with pytest.raises(errors.NotAnApprover):
        bulk.approve(grant_id, person("olga"), "Let me")
    with pytest.raises(errors.NotAnApprover):
        bulk.reject(grant_id, person("oscar"), "Let me")

    assert bulk.get(grant_id).status == "pending"
    assert moved_by(bulk.get(grant_id).file_sha256) == 0
    assert [e.details["error"] for e in events("approval.refused", "refused")] == [
        "self_approval", "not_an_approver", "not_an_approver"]


def test_a_rejected_grant_moves_nothing_and_its_file_may_be_sent_again(app, maker, checker):
    users = players(2)
    data = grant_file(users, amount=THRESHOLD)
    grant_id = sent_for_approval(data, maker)

    bulk.reject(grant_id, checker, "No ticket for this")

    grant = bulk.get(grant_id)
    assert (grant.status, grant.checker, grant.decision_reason) == (
        "rejected", "operator:checker", "No ticket for this")
    with pytest.raises(errors.RequestDecided):
        bulk.approve(grant_id, person("ann", approver=True), "Approve anyway")
    assert bulk.get(grant_id).status == "rejected"
    assert moved_by(grant.file_sha256) == 0 and [gold(u) for u in users] == [0, 0]
    assert sent_for_approval(data, maker) != grant_id  # a rejected file is not "submitted"
    assert verified()


def test_an_expired_grant_moves_nothing_and_cannot_be_decided(app, maker, checker):
    users = players(2)
    grant_id = sent_for_approval(grant_file(users, amount=THRESHOLD), maker)
    set_grant(grant_id, expires_at=utcnow() - timedelta(seconds=1))  # the window has passed

    assert bulk.pending() == [] and bulk.pending_count() == 0
    with pytest.raises(errors.RequestExpired):
        bulk.approve(grant_id, checker, "Too late")

    assert bulk.get(grant_id).status == "expired" and bulk.expire_due() == 0
    assert moved_by(bulk.get(grant_id).file_sha256) == 0 and [gold(u) for u in users] == [0, 0]
    assert [e.object_id for e in events("approval.expired")] == [str(grant_id)]


# ---------------------------------------------------------------- never twice


def test_the_same_file_again_is_refused_once_it_was_submitted(app, maker):
    users = players(3)
    data = grant_file(users, amount=100)
    first = posted_now(data, maker)

    again = bulk.preview(data, "same-file-renamed.csv", "bonus", maker)

    assert [(g.id, g.status) for g in again.earlier] == [(first, "done")]
    with pytest.raises(errors.FileAlreadySubmitted) as refused:
        submit(again.grant_id, maker)
    assert (refused.value.code, refused.value.status) == ("file_already_submitted", 409)
    assert f"bulk grant #{first}" in refused.value.message
    assert bulk.get(again.grant_id).status == "draft"
    assert moved_by(again.sha256) == 3 and [gold(u) for u in users] == [100] * 3


def test_two_drafts_of_one_file_submitted_at_once_send_the_file_once(app, database_url,
                                                                     maker):
    """_refuse_submitted_file reads the earlier grants before, and outside, the transaction
    that submits: a submission held up between the two (here by a row lock the test holds on
    its grant) lets the same file through twice."""
    data = grant_file(players(2), amount=THRESHOLD)
    first, second = draft(data, maker), draft(data, maker)

    with ThreadPoolExecutor(1) as pool:
        with psycopg.connect(database_url.replace("+psycopg", "")) as hold:
            hold.execute("SELECT id FROM bulk_grants WHERE id = %s FOR UPDATE", (first,))
            held_up = in_thread(app, pool, lambda: submit(first, maker))
            poll(lambda: waiting_on_a_lock("UPDATE bulk_grants"), "the first submission waits")
            try:
                answers = [submit(second, maker)]
            except errors.WalletError as error:
                answers = [error]
            hold.rollback()
        answers.append(held_up.result())

    statuses = sorted(bulk.get(grant).status for grant in (first, second))
    assert statuses == ["draft", "pending"], answers
    assert sorted(type(answer).__name__ for answer in answers) == ["FileAlreadySubmitted", "str"]


def test_a_granted_file_cannot_be_forced_through_a_second_grant(app, maker):
    """The database holds one submitted grant per file: even a second grant written past
    submit() cannot be put to posting, so its rows are never offered to the ledger again."""
    users = players(3)
    data = grant_file(users, amount=100)
    first = posted_now(data, maker)
    second = draft(data, maker)

    with pytest.raises(IntegrityError):
        set_grant(second, status="posting", submitted_at=utcnow(), reason_code="compensation",
                  ticket=TICKET, description="Compensation for the outage")

    assert bulk.run(second) is False  # a draft: nothing to post
    assert [gold(u) for u in users] == [100] * 3
    assert moved_by(bulk.get(first).file_sha256) == 3 and verified()


def test_two_posters_of_one_grant_at_once_post_each_row_once(app, maker):
    users = players(1_100)
    grant_id = draft(grant_file(users, amount=2), maker)
    submit(grant_id, maker, in_background=False)

    answers = run_at_once(app, [lambda: bulk.run(grant_id)] * 2)

    assert sorted(answers) == [False, True]  # the lease: one poster at a time
    grant = bulk.get(grant_id)
    assert (grant.status, grant.rows_done, grant.posted, grant.replayed) == (
        "done", 1_100, 1_100, 0)
    assert moved_by(grant.file_sha256) == 1_100 and total_gold(users) == 2_200 and verified()


def waiting_on_a_lock(statement: str) -> int:
    """How many connections wait on a lock while running `statement...`."""
    with db.engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE :statement"),
            {"statement": statement + "%"}).scalar_one()


def in_thread(app, pool: ThreadPoolExecutor, call):
    """call() on a thread of `pool` in its own app context: a future of its result, or of the
    exception it raised."""
    def run():
        with app.app_context():
            try:
                return call()
            except Exception as error:  # asserted on by the test
                return error
            finally:
                db.session.remove()
    return pool.submit(run)


def poll(condition, what: str):
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def test_a_poster_that_lost_its_lease_stops_instead_of_recording_over_its_successor(
        app, database_url, maker):
    """A poster frozen for longer than STALE_AFTER after its first batch is taken over by the
    sweeper. When it wakes it goes on with the second batch, which its successor is posting
    too, and stands down when it would record it: its lease (the heartbeat it wrote) is gone.
    An uncommitted outcome row holds the successor's record open until the first poster has
    stood down (the order is then certain: no timing)."""
    users = players(1_100)  # batch 1: lines 2-1001; batch 2: lines 1002-1101
    grant_id = draft(grant_file(users, amount=1), maker)
    submit(grant_id, maker, in_background=False)
    frozen, wake = threading.Event(), threading.Event()

    def freeze_after_the_first_batch(grant):
        if grant.rows_done == 1_000:
            age_heartbeat(grant_id)  # minutes pass
            frozen.set()
            assert wake.wait(HANG_GUARD_SECONDS)

    with ThreadPoolExecutor(2) as pool:
        first = in_thread(app, pool, lambda: bulk.run(
            grant_id, on_progress=freeze_after_the_first_batch))
        assert frozen.wait(HANG_GUARD_SECONDS)
        with psycopg.connect(database_url.replace("+psycopg", "")) as hold:
            hold.execute("INSERT INTO bulk_grant_outcomes (grant_id, line, status) "
                         "VALUES (%s, 1002, 'posted')", (grant_id,))
            successor = in_thread(app, pool, bulk.resume_stale)
            poll(lambda: waiting_on_a_lock("COPY bulk_grant_outcomes"), "the successor records")
            wake.set()
            stood_down = first.result(timeout=HANG_GUARD_SECONDS)  # its lease is gone: at once
            hold.rollback()
        answers = [stood_down, successor.result()]

    grant = bulk.get(grant_id)
    assert (grant.status, grant.rows_done, grant.posted + grant.replayed) == ("done", 1_100, 1_100)
    assert moved_by(grant.file_sha256) == 1_100 and total_gold(users) == 1_100
    assert answers == [False, 1], answers  # the first poster stood down; the sweeper finished


def test_a_grant_whose_poster_stopped_after_a_batch_is_finished_by_the_sweeper(app, maker):
    users = players(1_050)
    grant_id = draft(grant_file(users, amount=3), maker)
    submit(grant_id, maker, in_background=False)

    class PosterDied(Exception):
        pass

    def die(grant):
        raise PosterDied(grant.rows_done)

    with pytest.raises(PosterDied):
        bulk.run(grant_id, on_progress=die)
    assert (bulk.get(grant_id).status, bulk.get(grant_id).rows_done) == ("posting", 1_000)
    assert bulk.resume_stale() == 0  # a fresh heartbeat: its poster may still be at work
    age_heartbeat(grant_id)

    result = app.test_cli_runner().invoke(args=["sweep"])

    assert result.exit_code == 0, result.output
    assert "bulk_grants_resumed=1" in result.output
    grant = bulk.get(grant_id)
    assert (grant.status, grant.rows_done, grant.posted, grant.replayed) == (
        "done", 1_050, 1_050, 0)
    assert moved_by(grant.file_sha256) == 1_050 and total_gold(users) == 3_150
    assert bulk.resume_stale() == 0 and verified()


def test_a_poster_killed_in_the_middle_of_a_batch_is_resumed_and_each_row_moves_once(
        app, database_url, maker, tmp_path):
    """`flask bulk post --yes` in a process of its own, SIGKILLed once its first batch is in:
    the batch in flight may or may not have reached the ledger; resuming replays what did."""
    users = players(2_200)
    path = tmp_path / "outage.csv"
    path.write_bytes(grant_file(users, amount=1))  # 2,200 GOLD: below the threshold
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "bulk", "post", str(path),
               "--reason-code", "compensation", "--reason", "Outage", "--operator", "maker",
               "--yes"]
    poster = subprocess.Popen(command, cwd=ROOT_DIR, env={**os.environ,
                                                          "DATABASE_URL": database_url},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in poster.stderr:
            if re.match(r"1,000 of 2,200 rows done", line):
                poster.send_signal(signal.SIGKILL)
                break
    finally:
        poster.kill()
        poster.wait(timeout=60)
    db.session.rollback()
    [grant_id] = db.session.scalars(select(BulkGrant.id)).all()
    killed = bulk.get(grant_id)
    assert killed.status == "posting" and 1_000 <= killed.rows_done < 2_200
    age_heartbeat(grant_id)

    assert bulk.resume_stale() == 1

    grant = bulk.get(grant_id)
    assert (grant.status, grant.rows_done, grant.refused) == ("done", 2_200, 0)
    assert grant.posted + grant.replayed == 2_200
    assert moved_by(grant.file_sha256) == 2_200 and total_gold(users) == 2_200
    assert verified()
