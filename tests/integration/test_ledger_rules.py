"""The double-entry rules, every domain error, idempotency and reversal, on both backends."""
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from wallet_web import accounts, audit, errors, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Posting, Transaction

pytestmark = pytest.mark.both_backends


def house(asset: str, kind: str) -> int:
    return accounts.ensure_house_accounts(asset)[kind]


def count(model) -> int:
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_topup_moves_value_from_treasury_to_wallet(make_user, wallet_of):
    user = make_user()
    treasury_before = queries.account_balance(house("GOLD", "treasury"))

    receipt = ledger.topup(user, "GOLD", 250, "t-1", description="Card payment")

    assert receipt.kind == "topup" and not receipt.replayed
    assert sum(leg.amount for leg in receipt.postings) == 0
    assert receipt.balance_after(wallet_of(user)) == 250
    assert queries.account_balance(wallet_of(user)) == 250
    assert queries.account_balance(house("GOLD", "treasury")) == treasury_before - 250


def test_spend_moves_value_to_revenue(make_user, wallet_of):
    user = make_user(balance=100)
    receipt = ledger.spend(user, "GOLD", 30, "s-1")
    assert receipt.balance_after(wallet_of(user)) == 70
    assert queries.account_balance(house("GOLD", "revenue")) == 30


@pytest.mark.parametrize("source", ["promotions", "treasury"])
def test_bonus_comes_from_the_chosen_house_account(make_user, wallet_of, source):
    user = make_user()
    ledger.bonus(user, "DIAMOND", 5, "b-1", source=source)
    assert queries.account_balance(wallet_of(user, "DIAMOND")) == 5
    assert queries.account_balance(house("DIAMOND", source)) == -5 + (
        10**12 if source == "treasury" else 0)


def test_bonus_from_an_unknown_source_is_refused(make_user):
    with pytest.raises(errors.UnknownAccount):
        ledger.bonus(make_user(), "GOLD", 5, "b-1", source="revenue")


def test_spend_beyond_the_balance_is_refused_and_changes_nothing(make_user, wallet_of):
    user = make_user(balance=20)
    transactions_before = count(Transaction)
    with pytest.raises(errors.InsufficientFunds) as refused:
        ledger.spend(user, "GOLD", 21, "s-1")
    assert refused.value.details == {"account_id": wallet_of(user), "available": 20, "requested": 21}
    assert queries.account_balance(wallet_of(user)) == 20
    assert count(Transaction) == transactions_before


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10", True, None, 2**63])
def test_invalid_amounts_are_refused_before_the_database(make_user, amount):
    user = make_user()
    postings_before = count(Posting)
    with pytest.raises(errors.InvalidAmount):
        ledger.topup(user, "GOLD", amount, "t-1")
    assert count(Posting) == postings_before
    assert db.session.execute(
        select(Transaction).filter_by(reference_id="t-1")).first() is None


def test_unknown_user_asset_account_and_transaction(make_user):
    with pytest.raises(errors.UnknownUser):
        ledger.topup(999_999, "GOLD", 1, "t-1")
    with pytest.raises(errors.UnknownAsset):
        ledger.topup(make_user(), "SILVER", 1, "t-2")
    with pytest.raises(errors.UnknownAccount):
        ledger.post("adjustment", [ledger.Leg(999_999, 1), ledger.Leg(999_998, -1)], "t-3")
    with pytest.raises(errors.UnknownTransaction):
        ledger.reverse(999_999, "r-1")


@pytest.mark.both_backends
def test_a_frozen_wallet_receives_but_never_spends(make_user, wallet_of):
    user = make_user(balance=10)
    accounts.set_account_status(wallet_of(user), "frozen")
    with pytest.raises(errors.AccountFrozen, match="frozen") as refused:
        ledger.spend(user, "GOLD", 1, "s-1")
    assert refused.value.details["status"] == "frozen"
    assert ledger.topup(user, "GOLD", 1, "t-1").balance_after(wallet_of(user)) == 11
    accounts.set_account_status(wallet_of(user), "active")
    assert ledger.spend(user, "GOLD", 1, "s-1").balance_after(wallet_of(user)) == 10
    assert audit.verify().ok


def test_unbalanced_or_single_legged_transactions_are_refused(make_user, wallet_of):
    wallet = wallet_of(make_user())
    treasury = house("GOLD", "treasury")
    with pytest.raises(errors.UnbalancedTransaction):
        ledger.post("adjustment", [ledger.Leg(treasury, -5), ledger.Leg(wallet, 4)], "a-1")
    with pytest.raises(errors.UnbalancedTransaction):
        ledger.post("adjustment", [ledger.Leg(wallet, 5)], "a-2")


def test_legs_must_balance_per_asset_not_in_total(make_user, wallet_of):
    user = make_user()
    legs = [ledger.Leg(house("GOLD", "treasury"), -5), ledger.Leg(wallet_of(user, "DIAMOND"), 5)]
    with pytest.raises(errors.UnbalancedTransaction):
        ledger.post("adjustment", legs, "a-1")


def test_a_retry_returns_the_original_transaction(make_user, wallet_of):
    user = make_user()
    first = ledger.topup(user, "GOLD", 40, "t-1", description="x")
    again = ledger.topup(user, "GOLD", 40, "t-1", description="x")
    assert again == first and again.replayed
    assert queries.account_balance(wallet_of(user)) == 40


@pytest.mark.parametrize("change", [{"amount": 41}, {"asset": "DIAMOND"}, {"description": "y"}])
def test_a_reused_reference_with_another_payload_is_a_conflict(make_user, wallet_of, change):
    user = make_user()
    ledger.topup(user, "GOLD", 40, "t-1", description="x")
    request = {"user_id": user, "asset": "GOLD", "amount": 40, "description": "x", **change}
    with pytest.raises(errors.IdempotencyConflict):
        ledger.topup(request.pop("user_id"), request.pop("asset"), request.pop("amount"),
                     "t-1", **request)
    assert queries.account_balance(wallet_of(user)) == 40


def test_the_same_reference_for_another_kind_is_a_conflict(make_user):
    user = make_user(balance=100)
    ledger.topup(user, "GOLD", 10, "k-1")
    with pytest.raises(errors.IdempotencyConflict):
        ledger.spend(user, "GOLD", 10, "k-1")


def test_reversal_posts_the_mirror_legs_once(make_user, wallet_of):
    user = make_user(balance=100)
    spent = ledger.spend(user, "GOLD", 30, "s-1")

    reversal = ledger.reverse(spent.id, "r-1", description="refund")

    assert sorted((p.account_id, p.amount) for p in reversal.postings) == sorted(
        (p.account_id, -p.amount) for p in spent.postings)
    assert queries.account_balance(wallet_of(user)) == 100
    assert ledger.reverse(spent.id, "r-1", description="refund").replayed
    with pytest.raises(errors.AlreadyReversed):
        ledger.reverse(spent.id, "r-2")
    assert queries.account_balance(wallet_of(user)) == 100


def test_reversal_may_not_drive_a_wallet_negative(make_user, wallet_of):
    user = make_user()
    topped = ledger.topup(user, "GOLD", 50, "t-1")
    ledger.spend(user, "GOLD", 40, "s-1")
    with pytest.raises(errors.InsufficientFunds):
        ledger.reverse(topped.id, "r-1")
    assert queries.account_balance(wallet_of(user)) == 10


def test_a_reversal_cannot_itself_be_reversed(make_user):
    spent = ledger.spend(make_user(balance=10), "GOLD", 5, "s-1")
    reversal = ledger.reverse(spent.id, "r-1")
    with pytest.raises(errors.NotReversible):
        ledger.reverse(reversal.id, "r-2")


def test_postings_and_transactions_cannot_be_updated_or_deleted(make_user):
    ledger.topup(make_user(), "GOLD", 5, "t-1")
    for statement in ("UPDATE postings SET amount = amount + 1",
                      "DELETE FROM postings", "UPDATE transactions SET description = 'x'",
                      "DELETE FROM transactions"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text(statement))


def test_the_database_refuses_a_negative_wallet_even_without_the_service(make_user, wallet_of):
    wallet = wallet_of(make_user())
    with pytest.raises(DBAPIError, match="ck_accounts_balance_non_negative"):
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET balance = -1 WHERE id = :id"), {"id": wallet})


def test_verify_passes_on_a_healthy_ledger_and_names_a_broken_invariant(make_user, wallet_of):
    user = make_user(balance=70)
    ledger.spend(user, "GOLD", 20, "s-1")
    assert audit.verify().ok

    with db.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = :id"),
                     {"id": wallet_of(user)})
    report = audit.verify()
    assert not report.ok
    assert list(report.failures) == ["every cached balance equals the sum of its postings"]


def test_a_frozen_house_account_refuses_its_legs(make_user):
    user = make_user(balance=10)
    accounts.set_account_status(house("GOLD", "promotions"), "frozen")
    with pytest.raises(errors.AccountFrozen):
        ledger.bonus(user, "GOLD", 1, "b-1")
    assert ledger.bonus(user, "GOLD", 1, "b-2", source="treasury").postings
