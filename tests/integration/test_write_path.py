"""The single movement's two write paths on PostgreSQL (issue 16): a movement whose accounts
are cached is one ledger_apply on a ledger_pool connection, any other through the engine.
Both must answer alike, in success, refusal, replay and conflict; and what the dropped
hot-row foreign keys proved (migration 0012) is still proved."""
import uuid

import psycopg
import pytest
from sqlalchemy import text

from wallet_web import audit, batch, errors, ledger, ledger_pool
from wallet_web.extensions import db

ORPHANS = "every posting's account and transaction and every transaction's API key exist"
EVENTS = "every transaction has exactly one transaction.posted event"


@pytest.fixture(params=["ledger_pool", "engine"])
def write_path(request, app, monkeypatch):
    """Which path posts a movement of known accounts; the engine's when it is forced to."""
    if request.param == "engine":
        monkeypatch.setattr(ledger, "DIRECT_MAX_AMOUNT", 0)
    return request.param


def reference() -> str:
    return f"path-{uuid.uuid4()}"


def test_a_movement_of_known_accounts_is_posted_by_the_path_in_use(write_path, make_user,
                                                                   monkeypatch):
    user = make_user(balance=100)
    ledger.spend(user, "GOLD", 10, reference())  # both of a spend's accounts are now cached
    used = []
    original = ledger._post_direct
    monkeypatch.setattr(ledger, "_post_direct", lambda *a, **k: used.append(1) or original(*a, **k))
    receipt = ledger.spend(user, "GOLD", 30, reference())
    assert receipt.balance_after(receipt.postings[0].account_id) == 60
    assert used == ([1] if write_path == "ledger_pool" else [])


def test_a_wallet_new_to_the_process_is_read_and_posted_on_the_ledger_pool(app, make_user,
                                                                         monkeypatch):
    user, other = make_user(balance=50), make_user(balance=50)
    ledger.spend(other, "GOLD", 1, reference())  # the revenue account is now cached
    cache = app.extensions["ledger_accounts"]
    cache.pop(("wallet", user, "GOLD"))
    through_engine = []
    original = ledger.posting_connection
    monkeypatch.setattr(ledger, "posting_connection",
                        lambda: through_engine.append(1) or original())
    receipt = ledger.spend(user, "GOLD", 20, reference())
    wallet = cache[("wallet", user, "GOLD")]
    assert isinstance(wallet, ledger.AccountRule) and wallet.kind == "wallet"
    assert receipt.balance_after(wallet.id) == 30 and through_engine == []
    assert audit.verify().ok


def test_a_user_or_wallet_that_does_not_exist_is_explained_by_the_engine(app, make_user):
    user = make_user(balance=50)
    ledger.spend(user, "GOLD", 1, reference())  # the revenue account is now cached
    for missing in (10**12, 2**63, -1):
        with pytest.raises(errors.UnknownUser):
            ledger.spend(missing, "GOLD", 1, reference())
    with pytest.raises(errors.UnknownAsset):
        ledger.topup(user, "NOPE", 1, reference())


def test_both_paths_refuse_explain_replay_and_conflict_alike(write_path, make_user, wallet_of):
    user = make_user(balance=60)
    ledger.spend(user, "GOLD", 10, reference())  # both of a spend's accounts are now cached
    with pytest.raises(errors.InsufficientFunds) as refused:
        ledger.spend(user, "GOLD", 80, reference())
    assert refused.value.details == {"account_id": wallet_of(user), "available": 50,
                                     "requested": 80}
    taken = reference()
    first = ledger.topup(user, "GOLD", 5, taken)
    again = ledger.topup(user, "GOLD", 5, taken)
    assert again.replayed and again.id == first.id and again.postings == first.postings
    with pytest.raises(errors.IdempotencyConflict):
        ledger.topup(user, "GOLD", 6, taken)
    assert audit.verify().ok


def test_a_frozen_wallet_is_refused_by_the_write_itself(write_path, make_user):
    user = make_user(balance=40)
    ledger.spend(user, "GOLD", 1, reference())
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE accounts SET status = 'frozen' WHERE user_id = :u"), {"u": user})
    with pytest.raises(errors.AccountFrozen):
        ledger.spend(user, "GOLD", 10, reference())
    assert ledger.topup(user, "GOLD", 10, reference()).postings  # a credit still lands


def test_the_ledger_pool_closes_with_the_engine_and_opens_again(app, make_user):
    user = make_user(balance=10)
    pool = ledger_pool.get()
    ledger.topup(user, "GOLD", 1, reference())
    assert pool.pool is not None
    db.engine.dispose()
    assert pool.pool is None
    assert ledger.topup(user, "GOLD", 1, reference()).postings


def test_verify_finds_a_posting_whose_account_does_not_exist(app, make_user, database_url):
    make_user(balance=10)
    assert audit.verify().ok
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        tx = conn.execute("SELECT MAX(id) FROM transactions").fetchone()[0]
        conn.execute("INSERT INTO postings (transaction_id, account_id, amount, created_at) "
                     "VALUES (%s, 987654321, 1, now())", (tx,))
    report = audit.verify()
    assert not report.ok and report.failures[ORPHANS][0][0] == "posting"


def test_verify_finds_a_posting_whose_transaction_does_not_exist(app, make_user, wallet_of,
                                                                 database_url):
    account = wallet_of(make_user(balance=10))
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute("INSERT INTO postings (transaction_id, account_id, amount, created_at) "
                     "VALUES (987654321, %s, 1, now())", (account,))
    report = audit.verify()
    assert not report.ok and report.failures[ORPHANS][0][0] == "posting"


def test_every_movement_has_its_one_event_and_verify_finds_one_without(app, make_user,
                                                                       database_url):
    user = make_user(balance=10)
    ledger.spend(user, "GOLD", 3, reference())
    items = [batch.Item("topup", user, "GOLD", amount, reference()) for amount in (1, 2)]
    assert all(outcome.error is None for outcome in batch.post_many(items))
    assert audit.verify().ok
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        conn.execute("INSERT INTO transactions (kind, reference_id, fingerprint, description, "
                     "actor, created_at) VALUES ('adjustment', 'no-event', 'f', '', 'test', now())")
    report = audit.verify()
    assert [row[1] for row in report.failures[EVENTS]] == [0]


def test_accounts_and_api_keys_cannot_be_deleted(app, make_user, wallet_of, database_url):
    account = wallet_of(make_user())
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        key = conn.execute("INSERT INTO api_keys (name, scope, prefix, key_hash, created_at) "
                           "VALUES ('k', 'read', 'wk_x', 'h', now()) RETURNING id").fetchone()[0]
    for table, row in (("accounts", account), ("api_keys", key)):
        with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
            with pytest.raises(psycopg.errors.RaiseException, match="not allowed"):
                conn.execute(f"DELETE FROM {table} WHERE id = %s", (row,))
