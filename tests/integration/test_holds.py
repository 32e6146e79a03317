"""Holds at the service level: a shop's purchase as it happens, every step retried, every
refusal, and real concurrency (threads) with exact balances and `ledger verify` afterwards."""
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from tests.threads import run_at_once
from wallet_web import accounts, audit, errors, holds, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Account, Hold, utcnow

pytestmark = pytest.mark.both_backends


def gold(user_id: int) -> int:
    db.session.rollback()
    return next(a.balance for a in queries.user_balances(user_id)
                if a.asset_code == "GOLD" and a.kind == "wallet")


def house(kind: str) -> int:
    db.session.rollback()
    account = db.session.execute(select(Account.id).filter_by(kind=kind, asset_code="GOLD")).scalar()
    return queries.account_balance(account)


def hold_row(hold_id: int):
    db.session.rollback()
    return db.session.get(Hold, hold_id)


def expire_now(hold_id: int) -> None:
    db.session.execute(update(Hold).where(Hold.id == hold_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


def kinds_of(results: list) -> Counter:
    return Counter(type(result).__name__ for result in results)


def verified() -> bool:
    report = audit.verify()
    return report.ok or print(report.lines())


# ---------------------------------------------------------------- a purchase


def test_a_purchase_holds_then_captures_80_of_100_and_gives_20_back(app, make_user):
    user = make_user(balance=150)
    revenue = house("revenue")

    held = holds.place(user, "GOLD", 100, "cart-1:hold", description="Sword")
    assert (gold(user), held.hold.status) == (50, "open")
    assert house("holds") == 100

    captured = holds.capture(held.hold.id, "cart-1:capture", 80)

    assert (captured.hold.status, captured.hold.captured_amount) == ("captured", 80)
    assert (gold(user), house("holds"), house("revenue") - revenue) == (70, 0, 80)
    assert captured.hold.settle_transaction_id == captured.receipt.id
    assert verified()


def test_a_failed_delivery_voids_the_hold_and_everything_goes_back(app, make_user):
    user = make_user(balance=150)
    held = holds.place(user, "GOLD", 100, "cart-1:hold")

    voided = holds.void(held.hold.id, "cart-1:void")

    assert (voided.hold.status, gold(user), house("holds")) == ("voided", 150, 0)
    assert queries.get_transaction(voided.receipt.id).kind == "void"
    assert verified()


def test_a_capture_without_an_amount_takes_all_of_it(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 100, "h")

    captured = holds.capture(held.hold.id, "c")

    assert (captured.hold.captured_amount, gold(user)) == (100, 0)
    assert len(captured.receipt.postings) == 2  # nothing goes back: no zero leg


# ---------------------------------------------------------------- retries


def test_every_step_sent_again_returns_its_first_result(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    again = holds.place(user, "GOLD", 60, "h")
    captured = holds.capture(held.hold.id, "c", 50)
    captured_again = holds.capture(held.hold.id, "c", 50)

    assert (again.replayed, again.hold.id, again.receipt.id) == (True, held.hold.id,
                                                                 held.receipt.id)
    assert (captured_again.replayed, captured_again.receipt.id) == (True, captured.receipt.id)
    assert gold(user) == 50
    assert verified()


def test_a_void_sent_again_is_a_replay_and_a_capture_after_it_is_refused(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    holds.void(held.hold.id, "v")

    assert holds.void(held.hold.id, "v").replayed is True
    with pytest.raises(errors.HoldVoided):
        holds.capture(held.hold.id, "c")
    with pytest.raises(errors.HoldVoided):
        holds.void(held.hold.id, "v2")
    assert gold(user) == 100


def test_a_reference_sent_again_with_other_values_is_refused(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    holds.capture(held.hold.id, "c", 50)

    with pytest.raises(errors.IdempotencyConflict):
        holds.place(user, "GOLD", 61, "h")
    with pytest.raises(errors.IdempotencyConflict):
        holds.capture(held.hold.id, "c", 40)
    assert gold(user) == 50


# ---------------------------------------------------------------- refusals


def test_a_capture_above_the_held_amount_is_refused_and_moves_nothing(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")

    with pytest.raises(errors.CaptureExceedsHold):
        holds.capture(held.hold.id, "c", 61)

    assert (hold_row(held.hold.id).status, gold(user), house("holds")) == ("open", 40, 60)


def test_a_hold_needs_enough_available_and_an_active_wallet(app, make_user):
    user = make_user(balance=10)

    with pytest.raises(errors.InsufficientFunds):
        holds.place(user, "GOLD", 11, "h1")
    accounts.change_status(user, "freeze", "Fraud check")
    with pytest.raises(errors.AccountFrozen):
        holds.place(user, "GOLD", 5, "h2")

    assert (gold(user), house("holds")) == (10, 0)


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1, 1.5, "60"])
def test_an_expiry_outside_one_second_to_seven_days_is_refused(app, make_user, seconds):
    user = make_user(balance=10)

    with pytest.raises(errors.InvalidExpiry):
        holds.place(user, "GOLD", 5, "h", expires_in_seconds=seconds)

    assert gold(user) == 10


def test_expiry_defaults_to_fifteen_minutes_and_may_be_seven_days(app, make_user):
    user = make_user(balance=10)

    short = holds.place(user, "GOLD", 1, "h1").hold
    long = holds.place(user, "GOLD", 1, "h2", expires_in_seconds=7 * 24 * 3600).hold

    assert short.expires_at - short.created_at == timedelta(minutes=15)
    assert long.expires_at - long.created_at == timedelta(days=7)


def test_an_unknown_hold_is_not_found(app):
    with pytest.raises(errors.UnknownHold):
        holds.capture(10**9, "c")


def test_a_spend_never_uses_held_funds(app, make_user):
    user = make_user(balance=100)
    holds.place(user, "GOLD", 70, "h")

    with pytest.raises(errors.InsufficientFunds, match="holds 30"):
        ledger.spend(user, "GOLD", 31, "s")

    ledger.spend(user, "GOLD", 30, "s2")
    assert (gold(user), house("holds")) == (0, 70)


def test_closing_a_user_with_an_open_hold_is_refused(app, make_user):
    user = make_user(balance=10)
    holds.place(user, "GOLD", 10, "h")

    with pytest.raises(errors.BalanceNotZero):
        accounts.change_status(user, "close", "Player asked")


# ---------------------------------------------------------------- expiry


def test_an_expired_hold_can_be_neither_captured_nor_voided_before_it_is_released(
        app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    expire_now(held.hold.id)

    with pytest.raises(errors.HoldExpired):
        holds.capture(held.hold.id, "c")
    with pytest.raises(errors.HoldExpired):
        holds.void(held.hold.id, "v")

    # Not released yet (the holds account still has it), but no longer held: available.
    assert (hold_row(held.hold.id).status, house("holds"), gold(user)) == ("open", 60, 100)
    assert queries.user_balances(user)[1].held == 0


def test_the_sweep_releases_expired_holds_once_and_then_refuses_them_as_expired(
        app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    kept = holds.place(user, "GOLD", 10, "k")
    expire_now(held.hold.id)

    assert holds.expire_due() == 1
    assert holds.expire_due() == 0

    assert (hold_row(held.hold.id).status, hold_row(kept.hold.id).status) == ("expired", "open")
    assert (gold(user), house("holds")) == (90, 10)
    with pytest.raises(errors.HoldExpired):
        holds.capture(held.hold.id, "c")
    release = queries.get_transaction(hold_row(held.hold.id).settle_transaction_id)
    assert (release.kind, release.actor, release.reference_id) == (
        "void", "system", f"hold:{held.hold.id}:expiry")
    assert verified()


def test_the_command_releases_expired_holds(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    expire_now(held.hold.id)

    result = app.test_cli_runner().invoke(args=["holds", "expire"])

    assert result.exit_code == 0 and "released 1 expired hold" in result.output, result.output
    assert gold(user) == 100


def test_a_spend_short_only_because_of_an_expired_hold_releases_it_and_succeeds(
        app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    expire_now(held.hold.id)

    ledger.spend(user, "GOLD", 100, "s")

    assert (gold(user), hold_row(held.hold.id).status, house("holds")) == (0, "expired", 0)


# ---------------------------------------------------------------- concurrency


def test_sixteen_captures_of_one_hold_at_once_capture_it_once(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 100, "h")

    results = run_at_once(app, [lambda n=n: holds.capture(held.hold.id, f"c{n}", 70)
                                for n in range(16)])

    assert kinds_of(results) == {"Step": 1, "HoldCaptured": 15}, results
    assert (gold(user), house("holds")) == (30, 0)
    assert verified()


def test_sixteen_retries_of_one_capture_at_once_are_one_capture(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 100, "h")

    results = run_at_once(app, [lambda: holds.capture(held.hold.id, "c", 70)] * 16)

    assert kinds_of(results) == {"Step": 16}, results
    assert sum(not step.replayed for step in results) == 1
    assert len({step.receipt.id for step in results}) == 1
    assert gold(user) == 30


def test_captures_racing_voids_settle_each_hold_exactly_once(app, make_user):
    user = make_user(balance=800)
    placed = [holds.place(user, "GOLD", 100, f"h{n}").hold.id for n in range(8)]
    calls = [lambda h=h: holds.capture(h, f"c{h}") for h in placed] + \
            [lambda h=h: holds.void(h, f"v{h}") for h in placed]

    results = run_at_once(app, calls)

    assert kinds_of(results)["Step"] == 8, results
    assert set(kinds_of(results)) <= {"Step", "HoldCaptured", "HoldVoided"}
    captured = sum(hold_row(h).status == "captured" for h in placed)
    assert gold(user) == 800 - 100 * captured
    assert house("holds") == 0
    assert verified()


def test_a_capture_racing_the_sweep_is_either_captured_or_refused_never_both(
        app, make_user):
    user = make_user(balance=1000)
    placed = [holds.place(user, "GOLD", 100, f"h{n}").hold.id for n in range(10)]
    db.session.execute(update(Hold).values(expires_at=utcnow() + timedelta(milliseconds=300)))
    db.session.commit()

    results = run_at_once(app, [lambda h=h: holds.capture(h, f"c{h}") for h in placed]
                          + [holds.expire_due] * 2)

    db.session.rollback()
    statuses = Counter(hold_row(h).status for h in placed)
    assert set(statuses) <= {"captured", "expired", "open"}
    holds.expire_due()  # any the sweep came too early for
    statuses = Counter(hold_row(h).status for h in placed)
    assert statuses["captured"] + statuses["expired"] == 10
    assert gold(user) == 1000 - 100 * statuses["captured"]
    assert set(kinds_of(results)) <= {"Step", "int", "HoldExpired"}
    assert verified()


def test_fifty_holds_at_once_against_twenty_available_open_exactly_twenty(app, make_user):
    user = make_user(balance=20)

    results = run_at_once(app, [lambda n=n: holds.place(user, "GOLD", 1, f"h{n}")
                                for n in range(50)])

    assert kinds_of(results) == {"Step": 20, "InsufficientFunds": 30}, results
    assert (gold(user), house("holds")) == (0, 20)
    assert verified()


def test_verify_finds_a_holds_account_that_does_not_match_its_open_holds(app, make_user):
    user = make_user(balance=100)
    held = holds.place(user, "GOLD", 60, "h")
    db.session.execute(text("UPDATE holds SET status = 'voided' WHERE id = :id"),
                       {"id": held.hold.id})
    db.session.commit()

    report = audit.verify()

    assert list(report.failures) == ["every holds account holds exactly its asset's open holds"]
