"""Ledger browser: filters in the URL, keyset pages, the transaction page, reversal, CSV."""
import csv
import io
import re

from sqlalchemy import select

from wallet_web import api_keys, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import OPENING, Browser, gold_of

REVERSAL = {"reason": "Charged twice", "confirm": "y", "reference_id": "web-reverse-1"}


def ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/ledger/(\d+)">#', html)]


def stored_ids(kind: str | None = None) -> list[int]:
    """The ids of the stored transactions (of one kind), newest first."""
    db.session.rollback()
    query = select(Transaction.id).order_by(Transaction.id.desc())
    return list(db.session.scalars(query.filter_by(kind=kind) if kind else query))


def test_the_ledger_lists_newest_first_and_filters_by_kind(login, customer):
    ledger.spend(customer.id, "GOLD", 5, "ledger-spend")
    latest = ledger.topup(customer.id, "GOLD", 5, "ledger-topup")
    viewer = login("viewer")
    assert ids(viewer.get("/ledger").text) == stored_ids()
    topups = viewer.get("/ledger?kind=topup").text
    assert ids(topups) == stored_ids("topup")
    assert ids(topups)[:2] == [latest.id, customer.opening_id]
    assert '<option selected value="topup">' in topups  # the filter stays in the form


def test_filters_combine_user_asset_reference_and_time(login, make_user):
    user_id = make_user(name="vic")
    diamond = ledger.topup(user_id, "DIAMOND", 10, "vic-diamond")
    gold = ledger.topup(user_id, "GOLD", 10, "vic-gold")
    viewer = login("viewer")
    assert ids(viewer.get(f"/ledger?user_id={user_id}").text) == [gold.id, diamond.id]
    assert ids(viewer.get(f"/ledger?user_id={user_id}&asset=DIAMOND").text) == [diamond.id]
    assert ids(viewer.get("/ledger?reference_id=vic-gold").text) == [gold.id]
    assert ids(viewer.get("/ledger?since=2000-01-01T00:00&until=2000-01-02T00:00").text) == []
    assert ids(viewer.get("/ledger?since=2000-01-01T00:00").text) == stored_ids()


def test_an_htmx_filter_gets_only_the_filters_and_results(login):
    response = login("viewer").htmx("GET", "/ledger?kind=genesis")
    assert response.text.lstrip().startswith('<div id="ledger">') and "<html" not in response.text
    assert ids(response.text) == stored_ids("genesis")


def test_an_htmx_filter_with_an_error_shows_it_next_to_the_field(login):
    response = login("viewer").htmx("GET", "/ledger?until=soon")
    assert response.status_code == 422  # swapped by htmx (see the htmx-config meta tag)
    assert 'id="until-error"' in response.text and "<html" not in response.text


def test_invalid_filters_are_inline_errors(login):
    response = login("viewer").get("/ledger?user_id=abc&since=yesterday&kind=magic")
    assert response.status_code == 422
    for field in ("user_id", "since", "kind"):
        assert f'id="{field}-error"' in response.text
    assert ids(response.text) == []


def test_the_ledger_pages_with_a_keyset_cursor(login, make_user):
    user_id = make_user(name="walt")
    for n in range(30):
        ledger.topup(user_id, "GOLD", 1, f"walt-{n}")
    viewer = login("viewer")
    first = viewer.get(f"/ledger?user_id={user_id}")
    assert len(ids(first.text)) == 25
    link = re.search(r'href="(/ledger\?cursor=[^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert f"user_id={user_id}" in link  # the filters travel with the cursor
    second = viewer.get(link).text
    assert len(ids(second)) == 5 and set(ids(second)).isdisjoint(ids(first.text))
    rows = viewer.htmx("GET", link + "&rows=1").text
    assert "<table" not in rows and len(ids(rows)) == 5


def test_the_transaction_page_shows_postings_actor_and_links(login, customer):
    page = login("viewer").get(f"/ledger/{customer.opening_id}").text
    assert "opening:carla" in page and "Opening balance" in page and "system" in page
    assert f'<a href="{customer.page}?asset=GOLD">carla</a>' in page
    assert f"+{OPENING}" in page and f"\u2212{OPENING}" in page


def test_an_admin_reverses_a_transaction_once(login, customer):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    response = admin.post(f"{opening}/reversal", REVERSAL)
    assert response.status_code == 303
    reversal_id = int(response.headers["Location"].rsplit("/", 1)[1])
    again = admin.post(f"{opening}/reversal", REVERSAL)  # the same form again: a replay
    assert again.headers["Location"] == f"/ledger/{reversal_id}"
    page = admin.get(opening).text
    assert f'Reversed by</dt><dd><a href="/ledger/{reversal_id}">' in page
    assert "Reverse this transaction" not in page
    db.session.rollback()
    assert queries.get_transaction(reversal_id).actor == "operator:admin"
    assert queries.reversal_of(customer.opening_id).id == reversal_id
    assert gold_of(customer.id) == 0


def test_a_reversal_needs_confirmation_and_a_reason(login, customer):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    response = admin.post(f"{opening}/reversal", {"reason": "", "reference_id": "web-r2"})
    assert response.status_code == 422
    assert 'id="confirm-error"' in response.text and 'id="reason-error"' in response.text
    db.session.rollback()
    assert queries.reversal_of(customer.opening_id) is None


def test_a_second_reversal_under_another_reference_is_refused(login, customer):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    assert admin.post(f"{opening}/reversal", REVERSAL).status_code == 303
    response = admin.post(f"{opening}/reversal", {**REVERSAL, "reference_id": "web-reverse-2"})
    assert response.status_code == 422 and "already reversed" in response.text
    assert gold_of(customer.id) == 0  # reversed once


def test_a_reversal_under_a_reference_another_caller_took_is_refused_with_a_fresh_form(
        login, customer):
    spent = ledger.spend(customer.id, "GOLD", 5, "web-spend-to-reverse")
    ledger.topup(customer.id, "GOLD", 1, "web-taken", actor=ledger.Actor("api:shop"))
    admin = login("admin")
    response = admin.post(f"/ledger/{spent.id}/reversal", {**REVERSAL, "reference_id": "web-taken"})
    assert response.status_code == 422 and "taken by another caller" in response.text
    fresh = re.search(r'name="reference_id" type="hidden" value="([^"]+)"', response.text).group(1)
    assert fresh != "web-taken"
    retried = admin.post(f"/ledger/{spent.id}/reversal", {**REVERSAL, "reference_id": fresh})
    assert retried.status_code == 303
    db.session.rollback()
    assert queries.reversal_of(spent.id).reference_id == fresh


def test_genesis_cannot_be_reversed(login):
    genesis = f"/ledger/{stored_ids('genesis')[0]}"
    before = stored_ids()
    admin = login("admin")
    assert "Reverse this transaction" not in admin.get(genesis).text
    response = admin.post(f"{genesis}/reversal", REVERSAL)
    assert response.status_code == 422 and "cannot be reversed" in response.text
    assert stored_ids() == before


def test_the_csv_is_the_apis_csv_for_the_same_filters(login, app, customer):
    ledger.topup(customer.id, "GOLD", 7, "csv-topup")
    ledger.topup(customer.id, "DIAMOND", 7, "csv-diamond")
    viewer = login("viewer")
    filters = f"kind=topup&asset=GOLD&user_id={customer.id}"  # in the order of the form
    page = viewer.get(f"/ledger?{filters}").text
    assert f'href="/ledger/transactions.csv?{filters.replace("&", "&amp;")}"' in page
    dashboard = viewer.get(f"/ledger/transactions.csv?{filters}")
    token = api_keys.create_key("csv-check", "read")[1]
    api = Browser(app).get(f"/api/v1/transactions.csv?{filters}",
                           headers={"Authorization": f"Bearer {token}"})
    assert dashboard.status_code == 200 and dashboard.mimetype == "text/csv"
    assert dashboard.data == api.data
    rows = list(csv.DictReader(io.StringIO(dashboard.text)))
    assert {row["reference_id"] for row in rows} == {"opening:carla", "csv-topup"}


def test_the_csv_with_invalid_filters_goes_back_to_the_form(login):
    response = login("viewer").get("/ledger/transactions.csv?user_id=abc")
    assert response.status_code == 302 and response.headers["Location"].startswith("/ledger?")
