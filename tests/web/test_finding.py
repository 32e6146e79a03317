"""Finding transactions by what a player tells support: a reference's start, words of the
reason, a ticket number, an amount on a date (the header lookup and the ledger's filters),
jumping the ledger to a date, and how many rows match (counted up to a cap)."""
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from wallet_web import ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import Clock
from .test_amounts_and_confirmations import EUR, euro  # noqa: F401  (a fixture: EUR, 2 decimals)
from .test_users import movement


def lookup_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/ledger/(\d+)">Transaction #', html)]


def ledger_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/ledger/(\d+)">#', html)]


@pytest.fixture
def ledger_clock(monkeypatch):
    """The clock the ledger stamps transactions with."""
    clock = Clock(datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc))
    monkeypatch.setattr(ledger, "utcnow", clock)
    return clock


# ---------------------------------------------------------------- the header lookup


def test_the_lookup_finds_transactions_by_the_start_of_their_reference(login, make_user):
    user_id = make_user(name="rita")
    first = ledger.topup(user_id, "GOLD", 5, "shop-order-7781-a")
    second = ledger.topup(user_id, "GOLD", 5, "shop-order-7781-b")
    ledger.topup(user_id, "GOLD", 5, "shop-order-9000")
    found = login("viewer").htmx("GET", "/users?q=shop-order-7781").text
    assert lookup_ids(found) == [second.id, first.id]  # newest first


def test_an_exact_reference_comes_first_and_is_not_listed_twice(login, make_user):
    user_id = make_user(name="rita")
    exact = ledger.topup(user_id, "GOLD", 5, "order-12")
    longer = ledger.topup(user_id, "GOLD", 5, "order-123")
    assert lookup_ids(login("viewer").htmx("GET", "/users?q=order-12").text) == [
        exact.id, longer.id]


@pytest.mark.parametrize("typed", ["compensation", "COMPENS", "lost sword", "sword lost"])
def test_the_lookup_finds_transactions_by_words_of_their_reason(login, make_user, typed):
    user_id = make_user(name="rita")
    wanted = ledger.bonus(user_id, "GOLD", 5, "b-1",
                          description="Compensation for a lost sword (outage)")
    ledger.bonus(user_id, "GOLD", 5, "b-2", description="Event prize")
    assert lookup_ids(login("viewer").htmx("GET", f"/users?q={typed}").text) == [wanted.id]


@pytest.mark.parametrize("typed", ["SUP-7788", "sup-77", "%23sup-7788"])  # %23: "#"
def test_the_lookup_finds_a_dashboard_movement_by_its_ticket(login, customer, typed):
    operator = login("operator")
    operator.htmx("POST", f"{customer.page}/topup",
                  movement(reference="web-ticketed", ticket="SUP-7788", reason="Goodwill"))
    operator.htmx("POST", f"{customer.page}/topup",
                  movement(reference="web-other", ticket="SUP-1000", reason="Goodwill"))
    db.session.rollback()
    wanted = queries.find_transaction_by_reference("web-ticketed").id
    assert lookup_ids(operator.htmx("GET", f"/users?q={typed}").text) == [wanted]


def test_a_ticket_number_without_its_hash_finds_it(login, customer):
    operator = login("operator")
    operator.htmx("POST", f"{customer.page}/topup", movement(reference="web-h", ticket="#5512"))
    db.session.rollback()
    wanted = queries.find_transaction_by_reference("web-h").id
    assert lookup_ids(operator.htmx("GET", "/users?q=5512").text) == [wanted]


@pytest.mark.parametrize("typed", ["12.50 {day}", "12.5 on {day}", "{day} 12.50", "1,250 {day}"])
def test_the_lookup_finds_an_amount_on_a_day_in_the_assets_decimals(
        login, make_user, euro, ledger_clock, typed):
    user_id = make_user(name="rita")
    on_the_day = ledger.topup(user_id, EUR, 1250, "eur-on-the-day")  # 12.50
    spent = ledger.spend(user_id, EUR, 1250, "eur-spent-on-the-day")  # -12.50: either sign
    ledger.topup(user_id, EUR, 1251, "eur-other-amount")
    ledger.topup(user_id, "GOLD", 1250, "gold-1250")  # 1,250 GOLD is not 12.50 EUR
    ledger_clock.advance(timedelta(days=1))
    ledger.topup(user_id, EUR, 1250, "eur-next-day")
    found = login("viewer").htmx("GET", "/users?q=" + typed.format(day="2026-11-10")).text
    if typed.startswith("1,250"):  # 1,250 is 125000 EUR cents, and 1,250 GOLD on that day
        assert lookup_ids(found) == [queries.find_transaction_by_reference("gold-1250").id]
    else:
        assert lookup_ids(found) == [spent.id, on_the_day.id]
        assert re.search(r"/ledger\?amount=12\.50?&amp;since=2026-11-10T00(:|%3A)00&amp;until="
                         r"2026-11-11T00(:|%3A)00", found)  # the same search in the ledger


def test_the_lookup_escapes_what_it_echoes_and_says_when_nothing_matches(login):
    found = login("viewer").htmx("GET", "/users?q=%3Cb%3Ezzz").text
    assert "Nothing matches" in found and "&lt;b&gt;zzz" in found and "<b>zzz" not in found


# ---------------------------------------------------------------- the ledger's filters


def test_the_ledger_filters_by_reference_ticket_or_words_and_by_amount(login, make_user, euro):
    user_id = make_user(name="rita")
    words = ledger.bonus(user_id, EUR, 1250, "lf-1", description="Refund of a double charge")
    ledger.bonus(user_id, EUR, 999, "lf-2", description="Refund of an item")
    viewer = login("viewer")
    assert ledger_ids(viewer.get("/ledger?q=double+refund").text) == [words.id]
    assert ledger_ids(viewer.get("/ledger?q=lf-").text) == [
        queries.find_transaction_by_reference("lf-2").id, words.id]
    assert ledger_ids(viewer.get(f"/ledger?amount=12.50&asset={EUR}").text) == [words.id]
    assert ledger_ids(viewer.get("/ledger?amount=12.50&q=refund").text) == [words.id]


@pytest.mark.parametrize("amount, asset, message", [
    ("12.5.0", "", "Enter an amount such as 12.50"),
    ("ten", "", "Enter an amount such as 12.50"),
    ("12.50", "GOLD", "GOLD amounts have at most 0 decimals."),
    ("0", "", "Enter an amount above 0."),
])
def test_an_amount_the_asset_cannot_write_is_an_inline_error(login, amount, asset, message):
    response = login("viewer").get("/ledger", query_string={"amount": amount, "asset": asset})
    assert response.status_code == 422
    error = re.search(r'id="amount-error">([^<]+)<', response.text).group(1)
    assert error.startswith(message)


def test_load_more_and_the_csv_keep_the_search(login, make_user):
    user_id = make_user(name="rita")
    for n in range(27):
        ledger.bonus(user_id, "GOLD", 1, f"bulk-{n}", description="Season reward")
    viewer = login("viewer")
    first = viewer.get("/ledger?q=season").text
    more = re.search(r'href="(/ledger\?cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "q=season" in more and len(ledger_ids(viewer.get(more).text)) == 2
    assert 'href="/ledger/transactions.csv?q=season"' in first


# ---------------------------------------------------------------- jump to a date


def test_jumping_to_a_date_starts_the_list_at_the_end_of_that_utc_day(login, make_user,
                                                                       ledger_clock):
    user_id = make_user(name="rita")
    by_day = {}
    for day in (10, 11, 12):
        ledger_clock.now = datetime(2026, 11, day, 23, 30, tzinfo=timezone.utc)
        by_day[day] = [ledger.topup(user_id, "GOLD", 1, f"d{day}-{n}").id for n in range(2)]
    viewer = login("viewer")
    page = viewer.get(f"/ledger?user_id={user_id}&start=2026-11-11").text
    assert ledger_ids(page) == by_day[11][::-1] + by_day[10][::-1]
    assert "Jump to date (UTC)" in page and "Back to the newest" in page


def test_jump_to_date_then_load_more_goes_on_from_there(login, make_user, ledger_clock):
    user_id = make_user(name="rita")
    ledger_clock.now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    old = [ledger.topup(user_id, "GOLD", 1, f"old-{n}").id for n in range(30)]
    ledger_clock.now = datetime(2026, 11, 20, tzinfo=timezone.utc)
    ledger.topup(user_id, "GOLD", 1, "new")
    viewer = login("viewer")
    first = viewer.get(f"/ledger?user_id={user_id}&start=2026-11-05").text
    assert ledger_ids(first) == old[::-1][:25]
    more = re.search(r'href="(/ledger\?cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert ledger_ids(viewer.get(more).text)[:5] == old[::-1][25:]


def test_a_date_that_is_not_one_is_an_inline_error(login):
    response = login("viewer").get("/ledger?start=2026-13-40")
    assert response.status_code == 422 and 'id="start-error"' in response.text


# ---------------------------------------------------------------- how many match


def test_the_ledger_says_how_many_transactions_match(login, make_user):
    user_id = make_user(name="rita")
    for n in range(3):
        ledger.bonus(user_id, "GOLD", 1, f"c-{n}", description="Counted")
    count = re.search(r'id="ledger-count">([^<]+)<', login("viewer").get("/ledger?q=counted").text)
    assert count.group(1).strip() == "3 transactions match."


def test_above_the_cap_the_count_says_more_than_the_cap(login, make_user, monkeypatch):
    monkeypatch.setattr(queries, "COUNT_CAP", 2)
    user_id = make_user(name="rita")
    for n in range(3):
        ledger.bonus(user_id, "GOLD", 1, f"c-{n}", description="Counted")
    viewer = login("viewer")
    count = re.search(r'id="ledger-count">([^<]+)<', viewer.get("/ledger?q=counted").text)
    assert count.group(1).strip() == "More than 2 transactions match."
    assert queries.count_transactions(queries.TransactionFilters(text="counted")) == 3  # cap + 1


@pytest.mark.both_backends
def test_the_searches_find_the_same_on_both_backends(app, make_user, euro):
    user_id = make_user(name="rita")
    wanted = ledger.bonus(user_id, EUR, 1250, "Shop-[x]*?-1", description="Lost sword_of fire",
                          metadata={"ticket": "OPS/9"})
    ledger.bonus(user_id, EUR, 1, "shop-other", description="Other")
    for filters in (queries.TransactionFilters(text="Shop-[x]*?"),
                    queries.TransactionFilters(text="ops/"),
                    queries.TransactionFilters(text="sword fire"),
                    queries.TransactionFilters(amount=Decimal("12.5"))):
        assert [tx.id for tx in queries.list_transactions(filters).items] == [wanted.id], filters


# ---------------------------------------------------------------- PostgreSQL's indexes


SEARCHES = {
    "ix_transactions_reference_id_unique": queries.TransactionFilters(text="web-3f"),
    "ix_transactions_ticket_prefix": queries.TransactionFilters(text="SUP-12"),
    "ix_transactions_description_words": queries.TransactionFilters(text="goodwill"),
    "ix_postings_amount_created_at": queries.TransactionFilters(
        amount=Decimal(500), since=datetime(2026, 11, 1, tzinfo=timezone.utc),
        until=datetime(2026, 11, 2, tzinfo=timezone.utc)),
}


@pytest.mark.parametrize("index", SEARCHES)
def test_each_search_can_use_its_index(app, index):
    """The query's expression is the index's (else PostgreSQL could never use it): with
    sequential scans priced out, the plan names the index."""
    query = (queries.filtered_transactions(SEARCHES[index]).with_only_columns(Transaction.id)
             .order_by(None))
    sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.session.execute(text("EXPLAIN " + sql.replace("%%", "%"))).scalars())
    db.session.rollback()
    assert index in plan, plan


def test_the_users_page_without_a_search_lists_every_user_newest_first(login, make_user):
    older, newer = make_user(name="older"), make_user(name="newer")
    page = login("viewer").get("/users").text
    assert "All users" in page
    assert page.index(f'href="/users/{newer}"') < page.index(f'href="/users/{older}"')


def test_a_search_that_is_no_user_offers_the_ledger_search(login):
    page = login("viewer").get("/users?q=SUP-1234").text
    assert 'href="/ledger?q=SUP-1234"' in page
