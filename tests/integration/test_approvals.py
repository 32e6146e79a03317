"""Four-eyes approvals and daily limits at the service level: real threads against a real
database, exact balances, the request's status and `ledger verify` afterwards."""
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from tests.threads import run_at_once
from wallet_web import accounts, approvals, audit, controls, errors, operators, queries
from wallet_web.approvals import Intent
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, MovementRequest, Transaction, utcnow

PASSWORD = "a-long-password"
THREADS = 20


def person(name: str, role: str = "operator", approver: bool = False) -> operators.SignedIn:
    created = operators.create_operator(name, PASSWORD, role, approver)
    return operators.SignedIn(created.id, created.username, created.role, can_approve=approver)


def topup(user_id: int, amount: int, reference: str, **fields) -> Intent:
    return Intent("topup", reference, fields.pop("reason_code", "goodwill"),
                  fields.pop("description", "Goodwill for the test"), "GOLD", amount,
                  user_id=user_id, **fields)


def gold(user_id: int) -> int:
    db.session.rollback()
    return next(a.balance for a in queries.user_balances(user_id) if a.asset_code == "GOLD")


def transactions_count() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Transaction)).scalar_one()


def status_of(request_id: int) -> str:
    return queries.get_request(request_id).status


def events(action: str, outcome: str = "done") -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == action, AuditEvent.outcome == outcome).order_by(AuditEvent.id)))


def kinds_of(results: list) -> Counter:
    return Counter(type(result).__name__ for result in results)


@pytest.fixture
def maker(app):
    return person("maker")


@pytest.fixture
def checker(app):
    return person("checker", approver=True)


# ---------------------------------------------------------------- threshold and approval


@pytest.mark.both_backends
def test_below_the_threshold_a_movement_posts_at_once_with_its_reason_code_and_ticket(
        app, make_user, maker):
    user = make_user()

    outcome = approvals.submit(topup(user, 9_999, "web-1", ticket="SUP-12"), maker)

    assert (outcome.status, outcome.replayed) == ("posted", False)
    assert gold(user) == 9_999
    meta = queries.get_transaction(outcome.receipt.id).meta
    assert meta == {"reason_code": "goodwill", "ticket": "SUP-12",
                    "request_id": str(outcome.request_id)}
    assert status_of(outcome.request_id) == "posted"


@pytest.mark.both_backends
def test_at_the_threshold_it_waits_and_moves_nothing_until_another_approver_approves(
        app, make_user, maker, checker):
    user = make_user()
    before = transactions_count()

    outcome = approvals.submit(topup(user, 10_000, "web-1"), maker)

    assert (outcome.status, outcome.receipt) == ("pending", None)
    assert (gold(user), transactions_count()) == (0, before)
    receipt = approvals.approve(outcome.request_id, checker, "Checked the ticket")
    assert gold(user) == 10_000
    tx = queries.get_transaction(receipt.id)
    assert (tx.operator_id, tx.meta["checker_id"]) == (maker.id, str(checker.id))
    row = queries.get_request(outcome.request_id)
    assert (row.status, row.transaction_id, row.checker_id) == ("approved", receipt.id, checker.id)


def test_admins_are_held_to_the_threshold_too(app, make_user, checker):
    admin = person("boss", "admin", approver=True)
    user = make_user()

    outcome = approvals.submit(topup(user, 50_000, "web-1"), admin)

    assert outcome.status == "pending" and gold(user) == 0


def test_the_maker_can_never_approve_their_own_request_not_even_from_another_session(
        app, make_user, checker):
    user = make_user()
    outcome = approvals.submit(topup(user, 20_000, "web-1"), checker)
    second_session = operators.SignedIn(checker.id, checker.username, checker.role,
                                        session_token="another", can_approve=True)

    with pytest.raises(errors.SelfApproval):
        approvals.approve(outcome.request_id, second_session, "Looks fine to me")

    assert (gold(user), status_of(outcome.request_id)) == (0, "pending")
    refused = events("approval.refused", "refused")
    assert [(e.operator_id, e.details["error"]) for e in refused] == [(checker.id, "self_approval")]


def test_an_operator_without_the_approver_right_cannot_decide(app, make_user, maker):
    plain = person("plain")
    outcome = approvals.submit(topup(make_user(), 20_000, "web-1"), maker)

    with pytest.raises(errors.NotAnApprover):
        approvals.approve(outcome.request_id, plain, "I think it is fine")
    with pytest.raises(errors.NotAnApprover):
        approvals.reject(outcome.request_id, plain, "I think it is wrong")

    assert status_of(outcome.request_id) == "pending"


def test_a_disabled_approver_cannot_decide(app, make_user, maker, checker):
    outcome = approvals.submit(topup(make_user(), 20_000, "web-1"), maker)
    operators.set_active(checker.id, False)

    with pytest.raises(errors.NotAnApprover):
        approvals.approve(outcome.request_id, checker, "Fine")


def test_a_rejected_request_moves_nothing_and_cannot_be_approved_afterwards(
        app, make_user, maker, checker):
    user = make_user()
    outcome = approvals.submit(topup(user, 20_000, "web-1"), maker)
    other = person("other", approver=True)

    approvals.reject(outcome.request_id, checker, "No ticket for this")

    with pytest.raises(errors.RequestDecided, match="already rejected by checker"):
        approvals.approve(outcome.request_id, other, "Fine")
    assert (gold(user), status_of(outcome.request_id)) == (0, "rejected")
    assert [e.details["reason"] for e in events("approval.rejected")] == ["No ticket for this"]


def test_a_decision_needs_a_reason(app, make_user, maker, checker):
    outcome = approvals.submit(topup(make_user(), 20_000, "web-1"), maker)

    with pytest.raises(errors.InvalidRequest, match="reason"):
        approvals.approve(outcome.request_id, checker, "   ")

    assert status_of(outcome.request_id) == "pending"


def test_deciding_an_unknown_request_is_not_found(app, checker):
    with pytest.raises(errors.UnknownRequest):
        approvals.approve(987654, checker, "Fine")


# ---------------------------------------------------------------- exactly once


def test_two_approvers_at_the_same_instant_move_the_money_once(app, make_user, maker, checker):
    user = make_user()
    second = person("second", approver=True)
    outcome = approvals.submit(topup(user, 20_000, "web-1"), maker)

    results = run_at_once(app, [
        lambda: approvals.approve(outcome.request_id, checker, "Fine"),
        lambda: approvals.approve(outcome.request_id, second, "Fine too"),
    ])

    assert kinds_of(results) == {"Receipt": 1, "RequestDecided": 1}, results
    refused = next(r for r in results if isinstance(r, errors.RequestDecided))
    assert "already approved" in refused.message
    assert gold(user) == 20_000
    assert audit.verify().ok


def test_one_approver_clicking_approve_many_times_at_once_moves_the_money_once(
        app, make_user, maker, checker):
    user = make_user()
    outcome = approvals.submit(topup(user, 20_000, "web-1"), maker)
    before = transactions_count()

    results = run_at_once(app, [lambda: approvals.approve(outcome.request_id, checker, "ok")] * 8)

    assert kinds_of(results) == {"Receipt": 1, "RequestDecided": 7}, results
    assert (gold(user), transactions_count()) == (20_000, before + 1)


@pytest.mark.both_backends
def test_the_same_form_sent_twice_is_one_request_and_one_movement(app, make_user, maker):
    user = make_user()

    first = approvals.submit(topup(user, 500, "web-1"), maker)
    again = approvals.submit(topup(user, 500, "web-1"), maker)

    assert (again.request_id, again.receipt.id, again.replayed) == (
        first.request_id, first.receipt.id, True)
    assert gold(user) == 500
    assert approvals.used_today(maker.id, "GOLD") == 500


def test_a_form_sent_eight_times_at_once_is_one_request(app, make_user, maker):
    user = make_user()

    results = run_at_once(app, [lambda: approvals.submit(topup(user, 700, "web-1"), maker)] * 8)

    assert kinds_of(results) == {"Outcome": 8}, results
    assert len({result.request_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert gold(user) == 700
    assert approvals.used_today(maker.id, "GOLD") == 700


def test_a_pending_form_sent_again_is_the_same_request(app, make_user, maker):
    user = make_user()
    first = approvals.submit(topup(user, 20_000, "web-1"), maker)

    again = approvals.submit(topup(user, 20_000, "web-1"), maker)

    assert (again.request_id, again.status, again.replayed) == (first.request_id, "pending", True)
    assert approvals.used_today(maker.id, "GOLD") == 20_000


def test_a_reference_reused_with_other_values_or_by_another_maker_is_refused(
        app, make_user, maker):
    user = make_user()
    approvals.submit(topup(user, 500, "web-1"), maker)

    with pytest.raises(errors.IdempotencyConflict):
        approvals.submit(topup(user, 501, "web-1"), maker)
    with pytest.raises(errors.ReferenceTaken):
        approvals.submit(topup(user, 500, "web-1"), person("someone"))
    assert gold(user) == 500


# ---------------------------------------------------------------- expiry and failure


def expire(request_id: int) -> None:
    db.session.execute(update(MovementRequest).where(MovementRequest.id == request_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def test_requests_expire_after_the_configured_hours(app, make_user, maker):
    app.config["APPROVAL_EXPIRY_HOURS"] = 2
    outcome = approvals.submit(topup(make_user(), 20_000, "web-1"), maker)

    row = queries.get_request(outcome.request_id)

    assert row.expires_at - row.created_at == timedelta(hours=2)


@pytest.mark.both_backends
def test_an_expired_request_cannot_be_approved_and_is_recorded_as_expired(
        app, make_user, maker, checker):
    user = make_user()
    outcome = approvals.submit(topup(user, 20_000, "web-1"), maker)
    expire(outcome.request_id)

    with pytest.raises(errors.RequestExpired):
        approvals.approve(outcome.request_id, checker, "Fine")

    assert (gold(user), status_of(outcome.request_id)) == (0, "expired")
    assert [e.object_id for e in events("approval.expired")] == [str(outcome.request_id)]
    assert queries.pending_count() == 0


def test_expire_due_marks_only_requests_past_their_time(app, make_user, maker):
    user = make_user()
    old = approvals.submit(topup(user, 20_000, "web-1"), maker)
    fresh = approvals.submit(topup(user, 20_000, "web-2"), maker)
    expire(old.request_id)

    assert approvals.expire_due() == 1

    assert (status_of(old.request_id), status_of(fresh.request_id)) == ("expired", "pending")


def test_a_spend_that_cannot_be_paid_when_approved_fails_with_the_reason_and_moves_nothing(
        app, make_user, maker, checker):
    user = make_user(balance=25_000)
    spend = Intent("spend", "web-1", "correction", "Take back a double credit", "GOLD", 20_000,
                   user_id=user)
    outcome = approvals.submit(spend, maker)
    for n in (2, 3):  # posted at once: below the threshold
        approvals.submit(Intent("spend", f"web-{n}", "correction", "Another", "GOLD", 9_000,
                                user_id=user), person(f"third{n}"))
    before = transactions_count()

    with pytest.raises(errors.RequestFailed, match="holds 7000, needs 20000"):
        approvals.approve(outcome.request_id, checker, "Fine")

    row = queries.get_request(outcome.request_id)
    assert (row.status, row.transaction_id) == ("failed", None)
    assert "holds 7000" in row.failure
    assert (gold(user), transactions_count()) == (7_000, before)
    assert events("approval.failed")[0].details["error"] == "insufficient_funds"


def test_a_debit_of_a_user_frozen_since_the_request_fails(app, make_user, maker, checker):
    user = make_user(balance=30_000)
    outcome = approvals.submit(Intent("spend", "web-1", "correction", "Take back", "GOLD",
                                      20_000, user_id=user), maker)
    accounts.change_status(user, "freeze", "Fraud check")

    with pytest.raises(errors.RequestFailed, match="frozen"):
        approvals.approve(outcome.request_id, checker, "Fine")

    assert (gold(user), status_of(outcome.request_id)) == (30_000, "failed")


def test_a_refused_movement_below_the_threshold_is_recorded_as_failed(app, make_user, maker):
    user = make_user(balance=10)

    with pytest.raises(errors.InsufficientFunds):
        approvals.submit(Intent("spend", "web-1", "correction", "Too much", "GOLD", 50,
                                user_id=user), maker)

    row = db.session.execute(select(MovementRequest)).scalar_one()
    assert (row.status, row.transaction_id) == ("failed", None)
    assert approvals.used_today(maker.id, "GOLD") == 0  # a failed one uses no limit


# ---------------------------------------------------------------- reversals and transfers


def test_a_reversal_at_the_threshold_waits_for_approval_then_moves_back(
        app, make_user, maker, checker):
    user = make_user()
    original = approvals.submit(topup(user, 9_000, "web-1"), maker).receipt
    reversal = Intent("reversal", "web-2", "correction", "Wrong player", reverses_id=original.id)
    controls.set_policy("GOLD", 5_000, 50_000)

    outcome = approvals.submit(reversal, maker)

    assert (outcome.status, gold(user)) == ("pending", 9_000)
    receipt = approvals.approve(outcome.request_id, checker, "Confirmed with the player")
    assert gold(user) == 0
    assert queries.get_transaction(receipt.id).reverses_id == original.id
    assert queries.get_request(outcome.request_id).amount == 9_000


def test_a_transfer_is_counted_against_the_senders_daily_limit_like_any_movement(
        app, make_user, maker):
    sender, receiver = make_user(balance=60_000), make_user()

    approvals.submit(Intent("transfer", "web-1", "correction", "Wrong account", "GOLD", 9_000,
                            user_id=sender, to_user_id=receiver), maker)

    assert (gold(sender), gold(receiver)) == (51_000, 9_000)
    assert approvals.used_today(maker.id, "GOLD") == 9_000


# ---------------------------------------------------------------- daily limits


@pytest.mark.both_backends
def test_the_daily_limit_counts_pending_requests_and_says_what_is_left(app, make_user, maker):
    user = make_user()
    approvals.submit(topup(user, 9_000, "web-1"), maker)
    approvals.submit(topup(user, 40_000, "web-2"), maker)  # pending

    with pytest.raises(errors.DailyLimitExceeded) as refused:
        approvals.submit(topup(user, 1_001, "web-3"), maker)

    assert refused.value.details == {"asset": "GOLD", "limit": 50_000, "used": 49_000,
                                     "left": 1_000}
    assert "1,000 of 50,000 left today" in refused.value.message
    assert approvals.submit(topup(user, 1_000, "web-4"), maker).status == "posted"
    assert events("movement.submitted", "refused")[0].details["error"] == "daily_limit_exceeded"


def test_a_rejected_or_expired_request_gives_its_amount_back_to_the_day(
        app, make_user, maker, checker):
    user = make_user()
    rejected = approvals.submit(topup(user, 40_000, "web-1"), maker)
    expired = approvals.submit(topup(user, 10_000, "web-2"), maker)
    assert approvals.used_today(maker.id, "GOLD") == 50_000

    approvals.reject(rejected.request_id, checker, "No")
    expire(expired.request_id)

    assert approvals.used_today(maker.id, "GOLD") == 0


def test_yesterdays_movements_do_not_count_today(app, make_user, maker):
    user = make_user()
    approvals.submit(topup(user, 9_000, "web-1"), maker)
    db.session.execute(update(MovementRequest).values(
        created_at=utcnow() - timedelta(days=1)))
    db.session.commit()

    assert approvals.used_today(maker.id, "GOLD") == 0


def test_an_operators_own_limit_replaces_the_policys(app, make_user, maker):
    user = make_user()
    controls.set_operator_limit(maker.id, "GOLD", 1_000)

    with pytest.raises(errors.DailyLimitExceeded, match="1,000 of 1,000 left"):
        approvals.submit(topup(user, 1_001, "web-1"), maker)

    controls.set_operator_limit(maker.id, "GOLD", None)
    assert approvals.submit(topup(user, 1_001, "web-2"), maker).status == "posted"


def test_limits_are_per_asset_and_per_operator(app, make_user, maker):
    user = make_user()
    other = person("other")
    approvals.submit(topup(user, 9_000, "web-1"), maker)

    assert approvals.used_today(maker.id, "DIAMOND") == 0
    assert approvals.used_today(other.id, "GOLD") == 0


@pytest.mark.both_backends
def test_twenty_submissions_at_once_from_one_operator_cannot_pass_the_limit_together(
        app, make_user, maker):
    controls.set_policy("GOLD", 10_000, 20_000)
    user = make_user()
    calls = [lambda n=n: approvals.submit(topup(user, 3_000, f"web-{n}"), maker)
             for n in range(THREADS)]

    results = run_at_once(app, calls)

    assert kinds_of(results) == {"Outcome": 6, "DailyLimitExceeded": THREADS - 6}, results
    assert gold(user) == 18_000
    assert approvals.used_today(maker.id, "GOLD") == 18_000
    assert audit.verify().ok


def test_twenty_large_requests_at_once_reserve_no_more_than_the_limit(app, make_user, maker):
    user = make_user()
    calls = [lambda n=n: approvals.submit(topup(user, 12_000, f"web-{n}"), maker)
             for n in range(THREADS)]

    results = run_at_once(app, calls)

    pending = [r for r in results if isinstance(r, approvals.Outcome)]
    assert len(pending) == 4 and {r.status for r in pending} == {"pending"}, results
    assert approvals.used_today(maker.id, "GOLD") == 48_000
    assert gold(user) == 0


# ---------------------------------------------------------------- reason codes and tickets


@pytest.mark.parametrize("ticket", ["SUP-1234", "#5512", "OPS/77", "https://support.example.com/t/1",
                                    "http://jira.local:8080/browse/OPS-1?focus=1"])
def test_ticket_references_are_ids_or_web_addresses(ticket):
    assert controls.check_ticket(f"  {ticket} ") == ticket


@pytest.mark.parametrize("ticket", ["javascript:alert(1)", "ftp://files.example.com/x",
                                    "https://", "SUP 1234", "https://a b.example.com",
                                    "https://example.com/\u00e9", "https://x:port/",
                                    "-leading-dash", "x" * 65, "https://e.com/" + "a" * 300])
def test_anything_else_is_refused_as_a_ticket(ticket):
    with pytest.raises(errors.InvalidTicket):
        controls.check_ticket(ticket)


def test_a_movement_needs_a_reason_code_on_the_list(app, make_user, maker):
    user = make_user()
    controls.set_reason_code_active("promotion", False)

    for code in ("", "made_up", "promotion", None):
        with pytest.raises(errors.InvalidReasonCode):
            approvals.submit(topup(user, 10, f"web-{code}", reason_code=code), maker)

    assert gold(user) == 0
    assert len(events("movement.submitted", "refused")) == 4


def test_a_movement_with_a_bad_ticket_or_no_reason_text_is_refused(app, make_user, maker):
    user = make_user()

    with pytest.raises(errors.InvalidTicket):
        approvals.submit(topup(user, 10, "web-1", ticket="javascript:alert(1)"), maker)
    with pytest.raises(errors.InvalidRequest):
        approvals.submit(topup(user, 10, "web-2", description="  "), maker)

    assert gold(user) == 0


def test_a_retired_reason_code_stays_on_the_movements_that_carry_it(app, make_user, maker):
    outcome = approvals.submit(topup(make_user(), 10, "web-1", reason_code="promotion"), maker)

    controls.set_reason_code_active("promotion", False)

    assert queries.get_transaction(outcome.receipt.id).meta["reason_code"] == "promotion"
    assert "promotion" not in [c.code for c in controls.list_reason_codes()]
    assert "promotion" in [c.code for c in controls.list_reason_codes(active_only=False)]


# ---------------------------------------------------------------- a cut-off post is finished


def test_the_sweep_finishes_a_request_cut_off_before_it_posted(app, make_user, maker):
    user = make_user()
    with pytest.raises(errors.InsufficientFunds):  # leaves a request we then rewind
        approvals.submit(Intent("spend", "web-1", "correction", "x", "GOLD", 5, user_id=user),
                         maker)
    approvals.submit(topup(user, 100, "web-2"), maker)
    db.session.execute(update(MovementRequest).where(MovementRequest.reference_id == "web-1")
                       .values(status="posting", failure=None,
                               created_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()

    assert approvals.settle_stuck() == 1
    assert approvals.settle_stuck() == 0

    assert gold(user) == 95
    row = db.session.execute(select(MovementRequest)
                             .where(MovementRequest.reference_id == "web-1")).scalar_one()
    assert (row.status, row.transaction_id) == (
        "posted", queries.find_transaction_by_reference("web-1").id)


def test_the_sweep_marks_an_approval_cut_off_after_it_posted_without_posting_again(
        app, make_user, maker, checker):
    user = make_user()
    outcome = approvals.submit(topup(user, 20_000, "web-1"), maker)
    approvals.approve(outcome.request_id, checker, "Fine")
    db.session.execute(text("UPDATE movement_requests SET status = 'approving', "
                            "transaction_id = NULL, decided_at = :at"),
                       {"at": utcnow() - timedelta(minutes=5)})
    db.session.commit()
    before = transactions_count()

    runner = app.test_cli_runner()
    result = runner.invoke(args=["approvals", "sweep"])

    assert result.exit_code == 0 and "settled 1" in result.output, result.output
    assert (gold(user), transactions_count()) == (20_000, before)
    assert status_of(outcome.request_id) == "approved"


# ---------------------------------------------------------------- releasing a hold


def release(hold_id: int, reference: str) -> Intent:
    return Intent("void", reference, "correction", "Delivery failed", hold_id=hold_id)


def test_a_release_below_the_threshold_gives_the_hold_back_at_once(app, make_user, maker):
    from wallet_web import holds
    user = make_user(balance=500)
    held = holds.place(user, "GOLD", 300, "shop-1").hold

    outcome = approvals.submit(release(held.id, "web-1"), maker)

    assert (outcome.status, gold(user), queries.get_hold(held.id).status) == (
        "posted", 500, "voided")
    assert queries.get_transaction(outcome.receipt.id).meta["reason_code"] == "correction"
    assert queries.get_request(outcome.request_id).hold_id == held.id


def test_a_release_at_the_threshold_waits_for_a_checker(app, make_user, maker, checker):
    from wallet_web import holds
    user = make_user(balance=50_000)
    held = holds.place(user, "GOLD", 20_000, "shop-1").hold

    outcome = approvals.submit(release(held.id, "web-1"), maker)

    assert (outcome.status, gold(user)) == ("pending", 30_000)
    approvals.approve(outcome.request_id, checker, "Confirmed the failed delivery")
    assert (gold(user), queries.get_hold(held.id).status) == (50_000, "voided")


def test_a_release_of_a_hold_no_longer_open_is_refused(app, make_user, maker):
    from wallet_web import holds
    user = make_user(balance=500)
    held = holds.place(user, "GOLD", 300, "shop-1").hold
    holds.capture(held.id, "shop-1:capture")

    with pytest.raises(errors.HoldCaptured):
        approvals.submit(release(held.id, "web-1"), maker)

    assert gold(user) == 200
    assert events("movement.submitted", "refused")[0].details["error"] == "hold_captured"


def test_an_unknown_user_or_asset_is_refused_without_a_request(app, make_user, maker):
    user = make_user()

    with pytest.raises(errors.UnknownAsset):
        approvals.submit(Intent("topup", "web-1", "goodwill", "x", "NOPE", 5, user_id=user), maker)
    with pytest.raises(errors.UnknownUser):
        approvals.submit(Intent("transfer", "web-2", "goodwill", "x", "GOLD", 5, user_id=user,
                                to_user_id=10**9), maker)

    assert db.session.execute(select(func.count()).select_from(MovementRequest)).scalar() == 0
