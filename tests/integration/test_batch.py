"""The batch write path (batch.py) at the service level: every item posted, replayed or
refused on its own and checked against the running balances of the batch; an atomic batch
posts all or nothing; both backends give the same answers (ledger_apply_batch on
PostgreSQL, one savepoint per item on SQLite). Then real threads on PostgreSQL: overlapping
batches, and batches racing single movements for the same references."""
import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tests.threads import run_at_once
from wallet_web import accounts, assets, audit, batch, errors, holds, ledger, queries
from wallet_web.batch import Item
from wallet_web.extensions import db
from wallet_web.limits import SHARD_CEILING
from wallet_web.models import BalanceShard, Hold, Transaction, utcnow


def topup(user, amount, reference, asset="GOLD", **fields) -> Item:
    return Item("topup", user, asset, amount, reference, **fields)


def bonus(user, amount, reference, asset="GOLD", **fields) -> Item:
    return Item("bonus", user, asset, amount, reference, **fields)


def spend(user, amount, reference, asset="GOLD", **fields) -> Item:
    return Item("spend", user, asset, amount, reference, **fields)


def transfer(source, target, amount, reference, asset="GOLD", **fields) -> Item:
    return Item("transfer", source, asset, amount, reference, to_user_id=target, **fields)


def answers(outcomes: list[batch.Outcome]) -> list:
    """201 / 200 for a posted / replayed item, the error's code for a refused one."""
    return [outcome.error.code if outcome.error else outcome.status for outcome in outcomes]


def gold(user_id: int, asset: str = "GOLD") -> int:
    db.session.rollback()  # the ledger committed on its own connections
    return next(a.balance for a in queries.user_balances(user_id)
                if a.asset_code == asset and a.kind == "wallet")


def transactions_with(*references: str) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(Transaction)
                              .where(Transaction.reference_id.in_(references))).scalar_one()


def verified() -> bool:
    report = audit.verify()
    return report.ok or print(report.lines())


# ---------------------------------------------------------------- each item on its own
# Checks batch.py makes before the write (_plan) are the same code on both backends: those
# tests run on PostgreSQL only; everything the write decides runs on both.


@pytest.mark.both_backends
def test_every_kind_is_posted_with_its_receipt(app, make_user, wallet_of):
    alice, bob = make_user(balance=100), make_user()
    campaign = {"campaign": "winter"}

    outcomes = batch.post_many([topup(alice, 10, "b-1"), bonus(bob, 5, "b-2", metadata=campaign),
                                spend(alice, 30, "b-3", description="Sword"),
                                transfer(alice, bob, 20, "b-4", metadata=campaign)])

    assert answers(outcomes) == [201, 201, 201, 201]
    stored = [queries.get_transaction(o.receipt.id) for o in outcomes]
    assert [(t.kind, t.description, t.meta) for t in stored] == [
        ("topup", "", None), ("bonus", "", campaign), ("spend", "Sword", None),
        ("transfer", "", campaign)]
    assert [o.receipt.kind for o in outcomes] == ["topup", "bonus", "spend", "transfer"]
    assert [o.receipt.reference_id for o in outcomes] == ["b-1", "b-2", "b-3", "b-4"]
    assert [o.receipt.balance_after(wallet_of(alice)) for o in outcomes] == [110, None, 80, 60]
    assert outcomes[3].receipt.balance_after(wallet_of(bob)) == 25
    assert (gold(alice), gold(bob)) == (60, 25)
    assert batch.counts(outcomes) == {"posted": 4, "replayed": 0, "refused": 0}
    assert transactions_with("b-1", "b-2", "b-3", "b-4") == 4
    assert verified()


@pytest.mark.both_backends
def test_a_refused_item_leaves_the_others_posted_and_leaves_no_transaction(app, make_user):
    rich, poor, other = make_user(balance=100), make_user(balance=5), make_user()

    outcomes = batch.post_many([topup(rich, 10, "i-1"), spend(poor, 500, "i-2"),
                                bonus(other, 7, "i-3")])

    assert answers(outcomes) == [201, "insufficient_funds", 201]
    assert outcomes[1].status == 422
    assert outcomes[1].error.details["requested"] == 500
    assert (gold(rich), gold(poor), gold(other)) == (110, 5, 7)
    assert transactions_with("i-2") == 0
    assert batch.counts(outcomes) == {"posted": 2, "replayed": 0, "refused": 1}
    assert verified()


@pytest.mark.both_backends
def test_items_are_checked_in_order_against_the_running_balances_of_the_batch(
        app, make_user, wallet_of):
    """A spend sent before the top-up that would fund it is refused."""
    user = make_user()

    outcomes = batch.post_many([spend(user, 10, "r-0"), topup(user, 30, "r-1"),
                                spend(user, 20, "r-2"), spend(user, 20, "r-3"),
                                spend(user, 10, "r-4")])

    assert answers(outcomes) == ["insufficient_funds", 201, 201, "insufficient_funds", 201]
    assert [o.receipt.balance_after(wallet_of(user)) for o in outcomes if o.receipt] == [30, 10, 0]
    assert gold(user) == 0 and transactions_with("r-0", "r-3") == 0
    assert verified()


@pytest.mark.both_backends
def test_a_refusal_reports_the_balance_the_item_was_checked_against(app, make_user, wallet_of):
    """The spend was refused when the wallet held 10 (after the first top-up); the later
    top-up must not make the refusal read 'holds 110, needs 15'."""
    user = make_user()

    outcomes = batch.post_many([topup(user, 10, "c-1"), spend(user, 15, "c-2"),
                                topup(user, 100, "c-3")])

    assert answers(outcomes) == [201, "insufficient_funds", 201]
    refused = outcomes[1].error
    assert refused.details == {"account_id": wallet_of(user), "available": 10, "requested": 15}
    assert refused.details["available"] < refused.details["requested"]


@pytest.mark.both_backends
def test_transfers_in_both_directions_follow_each_other_within_a_batch(app, make_user):
    alice, bob, carol = make_user(balance=100), make_user(), make_user()

    outcomes = batch.post_many([
        transfer(alice, bob, 60, "t-1"), transfer(bob, alice, 10, "t-2"),
        transfer(bob, carol, 50, "t-3"), transfer(bob, alice, 1, "t-4"),
        transfer(carol, alice, 50, "t-5"),
    ])

    assert answers(outcomes) == [201, 201, 201, "insufficient_funds", 201]
    assert (gold(alice), gold(bob), gold(carol)) == (100, 0, 0)
    assert verified()


def test_a_reference_repeated_within_a_batch_refuses_the_later_item(app, make_user):
    user = make_user()

    outcomes = batch.post_many([topup(user, 5, "d-1"), topup(user, 5, "d-1"),
                                topup(user, 6, "d-2")])

    assert answers(outcomes) == [201, "duplicate_reference", 201]
    assert (outcomes[1].status, outcomes[1].error.details) == (422, {"item": 0})
    assert gold(user) == 11 and transactions_with("d-1") == 1
    assert verified()


def test_items_the_caller_found_invalid_are_refused_with_their_own_error(app, make_user):
    user = make_user()
    invalid = errors.InvalidRequest("amount: too small", field="amount")

    outcomes = batch.post_many([invalid, topup(user, 5, "v-1")])

    assert answers(outcomes) == ["validation_error", 201]
    assert outcomes[0].error is invalid
    aborted = batch.post_many([topup(user, 5, "v-2"), invalid], atomic=True)
    assert answers(aborted) == ["batch_aborted", "validation_error"]
    assert gold(user) == 5 and transactions_with("v-2") == 0


def test_items_a_single_movement_would_refuse_are_refused_alone(app, make_user):
    user = make_user()

    outcomes = batch.post_many([
        Item("gift", user, "GOLD", 5, "k-1"), topup(user, 0, "k-2"), topup(user, 5, ""),
        topup(user, 5, "k-3", to_user_id=2), Item("transfer", user, "GOLD", 5, "k-4"),
        transfer(user, user, 5, "k-5"), topup(-4, 5, "k-6"), topup(user, 3, "k-7"),
    ])

    assert answers(outcomes) == ["ledger_error", "invalid_amount", "ledger_error",
                                 "invalid_transfer", "invalid_transfer", "invalid_transfer",
                                 "user_not_found", 201]
    assert transactions_with("k-1", "k-2", "k-3", "k-4", "k-5", "k-6") == 0 and gold(user) == 3


# ---------------------------------------------------------------- users, assets and limits


@pytest.mark.both_backends
def test_frozen_users_take_credits_only_and_closed_users_take_nothing(app, make_user):
    frozen, closed, active = make_user(balance=50), make_user(), make_user(balance=50)
    accounts.change_status(frozen, "freeze", "chargeback under review")
    accounts.change_status(closed, "close", "left the game")
    accounts.set_account_status(accounts.ensure_house_accounts("DIAMOND")["treasury"], "frozen")

    outcomes = batch.post_many([
        topup(frozen, 5, "f-1"), spend(frozen, 5, "f-2"), transfer(frozen, active, 5, "f-3"),
        transfer(active, frozen, 5, "f-4"), topup(closed, 5, "f-5"),
        transfer(active, closed, 5, "f-6"), spend(active, 5, "f-7"),
        topup(active, 5, "f-8", asset="DIAMOND"),
    ])

    assert answers(outcomes) == [201, "account_frozen", "account_frozen", 201,
                                 "account_closed", "account_closed", 201, "account_frozen"]
    assert [o.status for o in outcomes] == [201, 423, 423, 201, 423, 423, 201, 423]
    assert (gold(frozen), gold(closed), gold(active)) == (60, 0, 40)
    assert gold(active, "DIAMOND") == 0
    assert transactions_with("f-2", "f-3", "f-5", "f-6", "f-8") == 0
    assert verified()


def test_unknown_users_and_assets_are_refused_alone(app, make_user):
    user, nobody = make_user(balance=10), 10**9

    outcomes = batch.post_many([
        topup(nobody, 5, "u-1"), topup(user, 5, "u-2", asset="PLATINUM"),
        transfer(user, nobody, 5, "u-3"), transfer(nobody, user, 5, "u-4"),
        topup(user, 5, "u-5"),
    ])

    assert answers(outcomes) == ["user_not_found", "asset_not_found", "user_not_found",
                                 "user_not_found", 201]
    assert [o.status for o in outcomes] == [404, 422, 404, 404, 201]
    assert gold(user) == 15 and transactions_with("u-1", "u-2", "u-3", "u-4") == 0


@pytest.mark.both_backends
def test_the_assets_limits_apply_to_every_item(app, make_user):
    user, other = make_user(), make_user()
    assets.set_limits("GOLD", max_amount=100, max_balance=1000)

    outcomes = batch.post_many([
        topup(user, 100, "l-1"), topup(user, 101, "l-2"), topup(other, 101, "l-3"),
        *[topup(user, 100, f"l-fill-{n}") for n in range(9)], topup(user, 1, "l-4"),
        transfer(user, other, 101, "l-5"), spend(user, 100, "l-6"),
    ])

    assert answers(outcomes) == [201, "amount_too_large", "amount_too_large", *[201] * 9,
                                 "balance_limit", "amount_too_large", 201]
    assert outcomes[1].error.details == {"asset": "GOLD", "max_amount": 100, "requested": 101}
    assert outcomes[12].error.details["max_balance"] == 1000
    assert (gold(user), gold(other)) == (900, 0)
    assert verified()


# ---------------------------------------------------------------- idempotency


@pytest.mark.both_backends
def test_an_item_and_a_single_movement_of_one_reference_replay_each_other(app, make_user):
    alice, bob = make_user(balance=50), make_user()
    single = ledger.topup(alice, "GOLD", 10, "s-1", description="daily")

    outcomes = batch.post_many([topup(alice, 10, "s-1", description="daily"),
                                transfer(alice, bob, 20, "s-2", metadata={"order": "7"})])
    again = ledger.transfer(alice, bob, "GOLD", 20, "s-2", metadata={"order": "7"})

    assert answers(outcomes) == [200, 201]
    assert outcomes[0].receipt == single and outcomes[0].receipt.replayed
    assert again.replayed and again == outcomes[1].receipt
    assert (gold(alice), gold(bob)) == (40, 20)
    assert transactions_with("s-1", "s-2") == 2


@pytest.mark.both_backends
def test_a_reference_reused_with_another_payload_is_refused(app, make_user):
    user = make_user()
    changes = [{"amount": 11}, {"description": "other"}, {"metadata": {"a": "b"}},
               {"kind": "bonus"}, {"asset": "DIAMOND"}]
    for n in range(len(changes)):
        ledger.topup(user, "GOLD", 10, f"s-4-{n}")

    outcomes = batch.post_many([*[Item(**{"kind": "topup", "user_id": user, "asset": "GOLD",
                                          "amount": 10, "reference_id": f"s-4-{n}", **changed})
                                  for n, changed in enumerate(changes)],
                                topup(user, 1, "s-5")])

    assert answers(outcomes) == [*["idempotency_key_reused"] * len(changes), 201]
    assert {o.status for o in outcomes[:-1]} == {422}
    assert gold(user) == 10 * len(changes) + 1 and gold(user, "DIAMOND") == 0
    assert verified()


@pytest.mark.both_backends
def test_another_callers_reference_is_taken(app, make_user):
    user = make_user()
    ledger.topup(user, "GOLD", 10, "s-6", actor=ledger.Actor("script:other"))

    outcomes = batch.post_many([topup(user, 10, "s-6"), topup(user, 1, "s-7")])

    assert answers(outcomes) == ["reference_taken", 201]
    assert outcomes[0].status == 409
    assert gold(user) == 11 and transactions_with("s-6") == 1


@pytest.mark.both_backends
def test_a_retried_batch_replays_what_was_posted_and_posts_only_the_rest(app, make_user):
    users = [make_user() for _ in range(6)]
    rewards = [bonus(user, 25, f"daily:{user}") for user in users]
    overdraft = spend(users[0], 26, f"shop:{users[0]}")
    first = batch.post_many([*rewards[:4], overdraft])  # the caller lost this answer

    retried = batch.post_many([*rewards, overdraft])

    assert answers(retried) == [200, 200, 200, 200, 201, 201, "insufficient_funds"]
    assert [o.receipt for o in retried[:4]] == [o.receipt for o in first[:4]]
    assert batch.counts(retried) == {"posted": 2, "replayed": 4, "refused": 1}
    assert [gold(user) for user in users] == [25] * 6
    assert transactions_with(*[item.reference_id for item in rewards]) == 6
    assert verified()


# ---------------------------------------------------------------- atomic


@pytest.mark.both_backends
def test_an_atomic_batch_posts_everything_when_nothing_is_refused_and_replays_it_whole(
        app, make_user):
    alice, bob = make_user(balance=10), make_user()
    items = [topup(alice, 5, "a-1"), transfer(alice, bob, 15, "a-2"), spend(bob, 15, "a-2b")]

    outcomes = batch.post_many(items, atomic=True)
    again = batch.post_many(items, atomic=True)

    assert (answers(outcomes), answers(again)) == ([201, 201, 201], [200, 200, 200])
    assert [o.receipt for o in again] == [o.receipt for o in outcomes]
    assert (gold(alice), gold(bob)) == (0, 0)


@pytest.mark.both_backends
def test_an_atomic_batch_with_a_refused_item_posts_nothing(app, make_user):
    alice, bob = make_user(balance=10), make_user()

    outcomes = batch.post_many([topup(alice, 5, "a-3"), spend(bob, 1, "a-4"),
                                transfer(alice, bob, 15, "a-5")], atomic=True)

    assert answers(outcomes) == ["batch_aborted", "insufficient_funds", "batch_aborted"]
    assert [o.status for o in outcomes] == [424, 422, 424]
    assert (gold(alice), gold(bob)) == (10, 0)
    assert transactions_with("a-3", "a-4", "a-5") == 0
    assert batch.counts(outcomes) == {"posted": 0, "replayed": 0, "refused": 3}
    assert verified()


@pytest.mark.both_backends
def test_an_atomic_batch_with_an_item_refused_before_the_write_posts_nothing(app, make_user):
    user = make_user()

    outcomes = batch.post_many([topup(user, 5, "a-6"), topup(10**9, 5, "a-7"),
                                topup(user, 5, "a-6")], atomic=True)

    assert answers(outcomes) == ["batch_aborted", "user_not_found", "duplicate_reference"]
    assert gold(user) == 0 and transactions_with("a-6") == 0


@pytest.mark.both_backends
@pytest.mark.parametrize("amount, actor, code", [
    (11, ledger.SYSTEM, "idempotency_key_reused"),
    (10, ledger.Actor("script:other"), "reference_taken"),
])
def test_a_replay_conflict_stops_an_atomic_batch(app, make_user, amount, actor, code):
    user = make_user()
    ledger.topup(user, "GOLD", amount, "a-8", actor=actor)
    before = gold(user)

    outcomes = batch.post_many([topup(user, 5, "a-9"), topup(user, 10, "a-8"),
                                topup(user, 5, "a-10")], atomic=True)

    assert answers(outcomes) == ["batch_aborted", code, "batch_aborted"]
    assert gold(user) == before and transactions_with("a-9", "a-10") == 0
    assert verified()


@pytest.mark.both_backends
def test_an_atomic_batch_replays_an_item_posted_before_and_posts_the_rest(app, make_user):
    user = make_user()
    single = ledger.topup(user, "GOLD", 10, "a-11")

    outcomes = batch.post_many([topup(user, 10, "a-11"), spend(user, 4, "a-12")], atomic=True)

    assert answers(outcomes) == [200, 201]
    assert outcomes[0].receipt == single
    assert gold(user) == 6


# ---------------------------------------------------------------- expired holds


def expire_now(hold_id: int) -> None:
    db.session.execute(update(Hold).where(Hold.id == hold_id)
                       .values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()


@pytest.mark.both_backends
@pytest.mark.parametrize("atomic", [False, True])
def test_a_wallet_short_only_because_of_an_expired_hold_gets_it_released(app, make_user, atomic):
    user, other = make_user(balance=100), make_user()
    expire_now(holds.place(user, "GOLD", 60, "h-1").hold.id)

    outcomes = batch.post_many([topup(other, 1, "h-2"), spend(user, 100, "h-3")], atomic=atomic)

    assert answers(outcomes) == [201, 201]
    assert (gold(user), gold(other)) == (0, 1)
    assert verified()


# ---------------------------------------------------------------- house shards at their ceiling


def revenue_shards_room(room: int) -> None:
    """Every shard of GOLD's revenue account `room` below its ceiling: a house account after
    a very long life. Set by hand, so `ledger verify` is not the point of these tests."""
    revenue = accounts.ensure_house_accounts("GOLD")["revenue"]
    db.session.execute(update(BalanceShard).where(BalanceShard.account_id == revenue)
                       .values(balance=SHARD_CEILING - room))
    db.session.commit()


@pytest.mark.both_backends
def test_a_batch_whose_house_sum_fits_no_shard_is_posted_in_parts(app, make_user):
    user = make_user(balance=1000)
    revenue_shards_room(150)

    outcomes = batch.post_many([spend(user, 100, "cap-1"), spend(user, 100, "cap-2")])

    assert answers(outcomes) == [201, 201]
    assert gold(user) == 800


@pytest.mark.both_backends
def test_an_item_no_house_shard_can_take_is_refused_as_a_single_movement_is(app, make_user):
    user = make_user(balance=1000)
    revenue_shards_room(150)
    with pytest.raises(errors.BalanceLimit) as single:
        ledger.spend(user, "GOLD", 200, "cap-3")

    outcomes = batch.post_many([spend(user, 10, "cap-4"), spend(user, 200, "cap-5")])

    assert answers(outcomes) == [201, "balance_limit"]
    assert outcomes[1].error.details == single.value.details
    assert gold(user) == 990


@pytest.mark.both_backends
def test_an_atomic_batch_whose_house_sum_fits_no_shard_posts_like_its_items_would(
        app, make_user):
    """Each item fits a shard (a single movement of each is posted): the batch is posted."""
    user = make_user(balance=1000)
    revenue_shards_room(150)

    outcomes = batch.post_many([spend(user, 100, "cap-6"), spend(user, 100, "cap-7")],
                               atomic=True)

    assert answers(outcomes) == [201, 201]
    assert gold(user) == 800


# ---------------------------------------------------------------- real threads (PostgreSQL)


def expected_balances(start: dict, batches: list[list[Item]], results: list) -> Counter:
    """The balances the posted items make, from the outcomes alone."""
    balances = Counter(start)
    for items, outcomes in zip(batches, results):
        for item, outcome in zip(items, outcomes):
            if outcome.status != 201:
                continue
            sign = -1 if item.kind in ("spend", "transfer") else 1
            balances[item.user_id] += sign * item.amount
            if item.kind == "transfer":
                balances[item.to_user_id] += item.amount
    return balances


def random_batch(rng: random.Random, users: list[int], tag: str, size: int) -> list[Item]:
    """Top-ups, spends and transfers both ways over the same few wallets, in random order."""
    items = []
    for n in range(size):
        kind = rng.choice(["topup", "spend", "spend", "transfer", "transfer"])
        user, other = rng.sample(users, 2)
        amount = rng.randint(1, 60)
        items.append(Item(kind, user, "GOLD", amount, f"{tag}-{n}",
                          to_user_id=other if kind == "transfer" else None))
    return items


def test_overlapping_batches_touching_the_same_wallets_never_deadlock(app, make_user):
    rng = random.Random(11)
    users = [make_user(balance=100) for _ in range(5)]
    batches = [random_batch(rng, users, f"w{n}", 40) for n in range(8)]
    atomic = [n % 4 == 3 for n in range(len(batches))]
    calls = [lambda items=items, whole=whole: batch.post_many(items, atomic=whole)
             for items, whole in zip(batches, atomic)]

    results = run_at_once(app, calls)

    assert all(isinstance(r, list) for r in results), results
    refusals = Counter(o.error.code for outcomes in results for o in outcomes if o.error)
    assert set(refusals) <= {"insufficient_funds", "batch_aborted"}, refusals
    assert refusals["insufficient_funds"] > 0  # the refuse-and-retry path did run
    posted = [o for outcomes in results for o in outcomes if o.status == 201]
    assert len(posted) > 0 and all(o.status in (201, 422, 424) for r in results for o in r)
    expected = expected_balances({user: 100 for user in users}, batches, results)
    assert {user: gold(user) for user in users} == dict(expected)
    references = [i.reference_id for items in batches for i in items]
    assert transactions_with(*references) == len(posted)
    assert verified()


def test_batches_racing_single_movements_for_the_same_references_post_each_once(
        app, make_user):
    users = [make_user() for _ in range(4)]
    items = [bonus(users[n % 4], n + 1, f"race-{n}") for n in range(24)]
    single = lambda item: ledger.bonus(item.user_id, item.asset, item.amount, item.reference_id)
    calls = [lambda: batch.post_many(items), lambda: batch.post_many(items[::-1]),
             lambda: batch.post_many(items[::2], atomic=True),
             *[lambda item=item: single(item) for item in items[::3]]]

    results = run_at_once(app, calls)

    receipts = [o.receipt for r in results[:3] for o in r] + results[3:]
    assert all(isinstance(r, ledger.Receipt) for r in receipts), results
    posted = Counter(r.reference_id for r in receipts if not r.replayed)
    assert posted == Counter(item.reference_id for item in items)  # once each, by someone
    assert len({(r.reference_id, r.id) for r in receipts}) == len(items)
    for user in users:
        assert gold(user) == sum(i.amount for i in items if i.user_id == user)
    assert transactions_with(*posted) == len(items)
    assert verified()


def test_a_batch_racing_a_single_movement_with_another_payload_loses_or_wins_cleanly(
        app, make_user):
    users = [make_user() for _ in range(3)]
    items = [topup(users[n % 3], 10, f"clash-{n}") for n in range(30)]
    calls = [lambda: batch.post_many(items),
             *[lambda n=n: ledger.topup(users[n % 3], "GOLD", 99, f"clash-{n}")
               for n in range(0, 30, 2)]]

    results = run_at_once(app, calls)

    outcomes, singles = results[0], dict(zip(range(0, 30, 2), results[1:]))
    assert isinstance(outcomes, list), outcomes
    for n, outcome in enumerate(outcomes):
        if n not in singles:
            assert outcome.status == 201
        elif isinstance(singles[n], ledger.Receipt):  # the single movement came first
            assert outcome.error.code == "idempotency_key_reused", (n, outcome)
        else:
            assert isinstance(singles[n], errors.IdempotencyConflict), (n, singles[n])
            assert outcome.status == 201
    credited = Counter()
    for n, outcome in enumerate(outcomes):
        credited[users[n % 3]] += 10 if outcome.status == 201 else 99
    assert {user: gold(user) for user in users} == dict(credited)
    assert verified()
