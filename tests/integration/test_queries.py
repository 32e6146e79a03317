"""The read side: lookups, keyset pages, point-in-time balances, the CSV audit trail."""
import csv
import io
import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from wallet_web import accounts, errors, exports, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Posting
from wallet_web.queries import TransactionFilters


@pytest.mark.both_backends
def test_find_users_by_id_username_or_email_prefix(app, make_user):
    carol = make_user(name="carol")
    assert [u.id for u in queries.find_users(str(carol))] == [carol]
    assert [u.username for u in queries.find_users("CAR")] == ["carol"]
    assert [u.username for u in queries.find_users("alice@ex")] == ["alice"]
    assert queries.find_users("%") == [] and queries.find_users("") == []


def test_user_balances_and_house_balances_are_exact(app, make_user):
    user = make_user(balance=30)
    ledger.bonus(user, "DIAMOND", 4, "b-1")
    balances = {b.asset_code: b.balance for b in queries.user_balances(user)}
    assert balances == {"DIAMOND": 4, "GOLD": 30, "LOYALTY": 0}
    house = {(b.asset_code, b.kind): b.balance for b in queries.house_balances()}
    assert house[("DIAMOND", "promotions")] == -4
    assert house[("GOLD", "treasury")] == 10**12 - 30 - 150  # alice 100 + bob 50 seeded
    with pytest.raises(errors.UnknownUser):
        queries.user_balances(999_999)


@pytest.mark.both_backends
def test_account_postings_pages_stay_stable_while_rows_arrive(app, make_user, wallet_of):
    user = make_user()
    for n in range(7):
        ledger.topup(user, "GOLD", n + 1, f"t-{n}")
    first = queries.account_postings(wallet_of(user), limit=3)
    ledger.topup(user, "GOLD", 100, "late")  # arrives between page loads
    second = queries.account_postings(wallet_of(user), first.next_cursor, limit=3)
    third = queries.account_postings(wallet_of(user), second.next_cursor, limit=3)

    amounts = [row.amount for page in (first, second, third) for row in page.items]
    assert amounts == [7, 6, 5, 4, 3, 2, 1]
    assert third.next_cursor is None
    assert first.items[0].balance_after == 28


@pytest.mark.parametrize("cursor", ["garbage", "aWQ6eA", "!!"])
def test_a_foreign_cursor_is_refused(app, cursor):
    with pytest.raises(errors.InvalidCursor):
        queries.list_transactions(TransactionFilters(), cursor)


def test_list_transactions_filters(app, make_user):
    user = make_user(balance=50)
    spent = ledger.spend(user, "GOLD", 5, "s-1")
    ledger.bonus(user, "LOYALTY", 9, "b-1")

    def ids(**filters):
        return [t.id for t in queries.list_transactions(TransactionFilters(**filters)).items]

    assert ids(user_id=user, kind="spend") == [spent.id]
    assert ids(reference_id="s-1") == [spent.id]
    assert len(ids(user_id=user)) == 3
    assert len(ids(user_id=user, asset="LOYALTY")) == 1
    assert ids(user_id=user, since=datetime.now(timezone.utc)) == []


def test_balance_at_a_point_in_time(app, make_user, wallet_of):
    user = make_user()
    ledger.topup(user, "GOLD", 10, "t-1")
    time.sleep(0.01)
    middle = datetime.now(timezone.utc)
    time.sleep(0.01)
    ledger.topup(user, "GOLD", 5, "t-2")
    assert queries.balance_at(wallet_of(user), middle) == 10
    assert queries.balance_at(wallet_of(user), datetime.now(timezone.utc)) == 15
    treasury = accounts.ensure_house_accounts("GOLD")["treasury"]
    assert queries.balance_at(treasury, middle) == 10**12 - 150 - 10


def test_audit_csv_has_a_row_per_posting_and_neutralises_formulas(app, make_user):
    user = make_user(name="=cmd|evil")
    ledger.topup(user, "GOLD", 5, "+ref", description="@SUM(A1)")
    rows = list(csv.DictReader(io.StringIO("".join(exports.audit_csv(TransactionFilters())))))

    assert len(rows) == db.session.execute(select(func.count()).select_from(Posting)).scalar_one()
    mine = [r for r in rows if r["reference_id"] == "'+ref"]
    assert {r["description"] for r in mine} == {"'@SUM(A1)"}
    assert {r["amount"] for r in mine} == {"5", "-5"}
    assert "'=cmd|evil" in {r["username"] for r in mine}
    assert all(r["created_at"].endswith("Z") for r in rows)


def test_audit_csv_with_filters_keeps_every_leg_of_matching_transactions(app, make_user):
    user = make_user(balance=10)
    text = "".join(exports.audit_csv(TransactionFilters(user_id=user)))
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + 2


@pytest.mark.parametrize("lookup, error", [
    (queries.get_user, errors.UnknownUser), (queries.get_account, errors.UnknownAccount),
    (queries.get_transaction, errors.UnknownTransaction)])
@pytest.mark.parametrize("row_id", [0, 999_999, 2**70])
def test_lookups_of_missing_rows_raise_their_domain_error(app, lookup, error, row_id):
    with pytest.raises(error):
        lookup(row_id)


def test_get_transaction_loads_postings_with_accounts_and_users(app, make_user):
    receipt = ledger.topup(make_user(name="dora"), "GOLD", 3, "t-1")
    tx = queries.get_transaction(receipt.id)
    assert {p.account.user.username for p in tx.postings} == {"dora", "system"}


@pytest.mark.both_backends
def test_newest_moving_finds_the_newest_transactions_of_an_amount_on_a_day(app, make_user,
                                                                          monkeypatch):
    moment = [datetime(2026, 11, 10, 8, 0, tzinfo=timezone.utc)]
    monkeypatch.setattr(ledger, "utcnow", lambda: moment[0])
    user = make_user(balance=1000)
    posted = []
    for minute in range(12):  # top-ups and spends of 7, one a minute
        moment[0] = moment[0].replace(minute=minute)
        flow = ledger.topup if minute % 2 else ledger.spend
        posted.append(flow(user, "GOLD", 7, f"seven-{minute}").id)
        ledger.topup(user, "GOLD", 8, f"eight-{minute}")
    moment[0] = datetime(2026, 11, 11, 0, 0, tzinfo=timezone.utc)
    ledger.topup(user, "GOLD", 7, "seven-next-day")
    day = datetime(2026, 11, 10, tzinfo=timezone.utc)

    found = queries.newest_moving(Decimal(7), day, day.replace(day=11), limit=5)
    assert [tx.id for tx in found] == posted[::-1][:5]
    assert queries.newest_moving(Decimal("7.5"), day, day.replace(day=11), limit=5) == []


@pytest.mark.both_backends
def test_a_word_search_pages_through_every_match_whether_common_or_rare(app, make_user,
                                                                       monkeypatch):
    monkeypatch.setattr(queries, "WORD_WINDOW", 3)  # the newest three read before the index
    user = make_user()
    sword = ledger.topup(user, "GOLD", 1, "w-sword", description="Lost sword").id
    prizes = [ledger.topup(user, "GOLD", 1, f"w-prize-{n}", description=f"Event prize {n}").id
              for n in range(7)]

    def every_page(text: str) -> list[int]:
        ids, cursor = [], None
        while True:
            page = queries.list_transactions(TransactionFilters(text=text), cursor, limit=2)
            ids += [tx.id for tx in page.items]
            if page.next_cursor is None:
                return ids
            cursor = page.next_cursor

    assert every_page("prize") == prizes[::-1]  # common: found in the window, page by page
    assert every_page("swo") == [sword]  # rare, older than the window: from the index
    assert every_page("lost prize") == []
    # The index over its time budget (a common word): the older rows, newest first.
    monkeypatch.setattr(queries, "_from_the_words_index", lambda *_args: None)
    assert every_page("prize") == prizes[::-1]
    assert every_page("swo") == [sword]
