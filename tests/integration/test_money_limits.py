"""No value can overflow or become a float: per-asset limits, ceilings on every stored amount,
house shards that never overflow, and refusals that commit nothing — on both backends."""
import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from tests.hostile import money
from wallet_web import ROOT_DIR, accounts, assets, audit, errors, ledger, queries
from wallet_web.extensions import db
from wallet_web.limits import BALANCE_CEILING, BIGINT_MAX, HOUSE_SHARDS, SHARD_CEILING
from wallet_web.models import Asset, BalanceShard

pytestmark = pytest.mark.both_backends


def house(asset: str, kind: str) -> int:
    return accounts.ensure_house_accounts(asset)[kind]



@pytest.fixture
def refused_changes_nothing(app):
    """refused_changes_nothing(error class, call) -> the raised error; asserts no change."""
    def check(error_class, call, *args, **kwargs):
        before = money()
        with pytest.raises(error_class) as raised:
            call(*args, **kwargs)
        assert money() == before
        return raised.value
    return check


def test_a_topup_of_the_largest_bigint_is_refused_and_the_ledger_stays_exact(
        make_user, wallet_of, refused_changes_nothing):
    user = make_user(balance=1030)

    error = refused_changes_nothing(errors.AmountTooLarge, ledger.topup, user, "GOLD",
                                    BIGINT_MAX, "t-huge")

    assert error.code == "amount_too_large" and error.status == 422
    assert error.details == {"asset": "GOLD", "max_amount": 10**9, "requested": BIGINT_MAX}
    assert ledger.spend(user, "GOLD", 30, "s-1").balance_after(wallet_of(user)) == 1000
    assert audit.verify().ok


@pytest.mark.parametrize("amount", [10**9 + 1, BALANCE_CEILING, BALANCE_CEILING + 1,
                                    SHARD_CEILING + 1, BIGINT_MAX, 2**63, 10**30])
def test_amounts_above_the_assets_maximum_are_refused(make_user, refused_changes_nothing,
                                                     amount):
    user = make_user(balance=10)
    for flow in (ledger.topup, ledger.bonus, ledger.spend):
        error = refused_changes_nothing(errors.AmountTooLarge, flow, user, "GOLD", amount, "r-1")
        assert error.details["max_amount"] == 10**9


def test_the_maximum_amount_itself_is_accepted(make_user, wallet_of):
    user = make_user()
    assert ledger.topup(user, "GOLD", 10**9, "t-1").balance_after(wallet_of(user)) == 10**9


def test_limits_are_per_asset_and_apply_to_the_next_movement(make_user, wallet_of,
                                                              refused_changes_nothing):
    user = make_user()
    assets.set_limits("DIAMOND", max_amount=600, max_balance=1000)

    ledger.topup(user, "DIAMOND", 600, "t-1")
    refused_changes_nothing(errors.AmountTooLarge, ledger.topup, user, "DIAMOND", 601, "t-2")
    error = refused_changes_nothing(errors.BalanceLimit, ledger.topup, user, "DIAMOND", 401, "t-3")
    ledger.topup(user, "GOLD", 5000, "t-4")  # another asset keeps its own limits

    assert error.code == "balance_limit"
    assert error.details == {"account_id": wallet_of(user, "DIAMOND"), "balance": 600,
                             "max_balance": 1000, "requested": 401}
    assert ledger.topup(user, "DIAMOND", 400, "t-5").balance_after(
        wallet_of(user, "DIAMOND")) == 1000


def test_a_lowered_max_balance_still_lets_a_richer_wallet_spend(make_user, wallet_of):
    user = make_user(balance=5000)
    assets.set_limits("GOLD", max_amount=100, max_balance=1000)
    assert ledger.spend(user, "GOLD", 100, "s-1").balance_after(wallet_of(user)) == 4900
    with pytest.raises(errors.BalanceLimit):
        ledger.topup(user, "GOLD", 1, "t-1")


@pytest.mark.parametrize("limits", [
    {"max_amount": 0}, {"max_amount": 2000, "max_balance": 1000},
    {"max_balance": BALANCE_CEILING + 1}, {"max_amount": 1.5}, {"max_amount": True},
])
def test_limits_outside_their_range_are_refused(app, limits):
    with pytest.raises(assets.InvalidLimits):
        assets.set_limits("GOLD", **{"max_balance": 10**12, **limits})
    gold = db.session.get(Asset, "GOLD")
    db.session.refresh(gold)
    assert (gold.max_amount, gold.max_balance) == (10**9, 10**12)


def test_a_house_leg_moves_to_another_shard_near_the_ceiling_and_is_refused_when_none_can_take_it(
        make_user, refused_changes_nothing):
    """Fill 15 of the treasury's 16 shards up to their ceiling: every top-up still lands, on
    the 16th. Fill that one too: a top-up is a clean refusal, never a database error."""
    treasury, equity = house("GOLD", "treasury"), house("GOLD", "equity")
    user = make_user()
    _fill_shards(treasury, equity, leave_free=1)
    for n in range(20):  # the random first shard is full 15 times in 16
        ledger.topup(user, "GOLD", 1, f"t-{n}")

    _fill_shards(treasury, equity, leave_free=0)
    error = refused_changes_nothing(errors.BalanceLimit, ledger.topup, user, "GOLD", 1, "t-full")

    assert error.details == {"account_id": treasury, "requested": -1}
    total = queries.account_balance(treasury)
    assert -BIGINT_MAX <= total == -HOUSE_SHARDS * SHARD_CEILING
    assert audit.verify().ok


def _fill_shards(treasury: int, equity: int, leave_free: int) -> None:
    """Adjustments from the treasury to equity until all but `leave_free` treasury shards are
    at -SHARD_CEILING: each takes the fullest shard's room (at most the ceiling per leg)."""
    while True:
        rooms = sorted(db.session.execute(select(BalanceShard.balance + SHARD_CEILING).where(
            BalanceShard.account_id == treasury)).scalars(), reverse=True)
        db.session.rollback()
        if sum(1 for room in rooms if room) <= leave_free:
            return
        amount = min(rooms[0], SHARD_CEILING)
        ledger.post("adjustment", [ledger.Leg(treasury, -amount), ledger.Leg(equity, amount)],
                    f"fill-{len(rooms)}-{sum(rooms)}")


def test_house_legs_above_the_shard_ceiling_are_refused_before_the_database(
        refused_changes_nothing):
    treasury, equity = house("GOLD", "treasury"), house("GOLD", "equity")
    legs = [ledger.Leg(treasury, -(SHARD_CEILING + 1)), ledger.Leg(equity, SHARD_CEILING + 1)]
    refused_changes_nothing(errors.AmountTooLarge, ledger.post, "adjustment", legs, "a-1")


@pytest.mark.parametrize("statement", [
    "UPDATE accounts SET balance = 1000000000000001 WHERE kind = 'wallet'",
    "UPDATE accounts SET balance = 5 WHERE kind = 'treasury'",
    "UPDATE balance_shards SET balance = -72057594037927936",
    "UPDATE assets SET max_amount = 0",
    "UPDATE assets SET max_balance = 1000000000000001",
])
def test_the_database_refuses_out_of_range_values_without_the_service(make_user, statement):
    make_user(balance=10)
    with pytest.raises(IntegrityError):
        with db.engine.begin() as conn:
            conn.execute(text(statement))


@pytest.mark.sqlite_only  # PostgreSQL's bigint columns cannot hold anything else
def test_sqlite_stores_only_integers(make_user):
    make_user(balance=10)
    for statement in ("UPDATE accounts SET balance = 1.5 WHERE kind = 'wallet'",
                      "UPDATE accounts SET balance = '12' || 'x' WHERE kind = 'wallet'",
                      "UPDATE balance_shards SET balance = 0.5",
                      "UPDATE assets SET max_amount = 10.5"):
        with pytest.raises(IntegrityError, match="is_integer|CHECK"):
            with db.engine.begin() as conn:
                conn.execute(text(statement))


def test_a_reference_taken_by_another_caller_reveals_nothing_and_replays_for_its_owner(
        make_user, wallet_of, refused_changes_nothing):
    user = make_user(balance=100)
    shop = ledger.Actor("api:shop", api_key_id=None, operator_id=None)
    first = ledger.spend(user, "GOLD", 10, "order-1", actor=shop)
    for other in (ledger.SYSTEM, ledger.Actor("api:game"), ledger.Actor("operator:x")):
        error = refused_changes_nothing(errors.ReferenceTaken, ledger.spend, user, "GOLD", 10,
                                        "order-1", actor=other)
        assert error.status == 409 and error.details == {}
        assert "order-1" in error.message and str(first.id) not in error.message
    assert ledger.spend(user, "GOLD", 10, "order-1", actor=shop) == first
    assert queries.account_balance(wallet_of(user)) == 90


def test_a_reversal_under_a_reference_of_another_caller_is_refused(make_user,
                                                                   refused_changes_nothing):
    user = make_user(balance=100)
    spent = ledger.spend(user, "GOLD", 10, "s-1")
    ledger.topup(user, "GOLD", 1, "taken", actor=ledger.Actor("api:shop"))
    refused_changes_nothing(errors.ReferenceTaken, ledger.reverse, spent.id, "taken")


def test_the_assets_commands_set_and_list_the_limits(app, database_url):
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "assets"]
    env = {**os.environ, "DATABASE_URL": database_url}

    def run(*args):
        return subprocess.run(flask + list(args), cwd=ROOT_DIR, env=env, capture_output=True,
                              text=True, timeout=60)

    changed = run("set-limits", "GOLD", "--max-amount", "500", "--max-balance", "9000")
    refused = run("set-limits", "GOLD", "--max-amount", "9001")
    listed = run("list")

    assert changed.returncode == 0 and "max_amount=500 max_balance=9000" in changed.stdout
    assert refused.returncode == 1 and "need 1 <= max_amount" in refused.stderr
    assert "GOLD\tGold Coins\tmax_amount=500\tmax_balance=9000" in listed.stdout
    db.session.rollback()
    assert db.session.get(Asset, "GOLD").max_amount == 500
