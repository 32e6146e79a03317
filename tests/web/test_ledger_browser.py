"""Ledger browser: filters in the URL, keyset pages, the transaction page, reversal, CSV."""
import csv
import io
import re

from wallet_web import api_keys, ledger, queries
from wallet_web.extensions import db

from .conftest import Browser

REVERSAL = {"reason": "Charged twice", "confirm": "y", "reference_id": "web-reverse-1"}


def ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/ledger/(\d+)">#', html)]


def test_the_ledger_lists_newest_first_and_filters_by_kind(login):
    viewer = login("viewer")
    everything = ids(viewer.get("/ledger").text)
    assert everything == sorted(everything, reverse=True) and len(everything) == 5
    topups = viewer.get("/ledger?kind=topup").text
    assert ids(topups) == [5, 4]
    assert '<option selected value="topup">' in topups  # the filter stays in the form


def test_filters_combine_user_asset_reference_and_time(login, make_user):
    user_id = make_user(balance=10, asset="DIAMOND", name="vic")
    viewer = login("viewer")
    assert ids(viewer.get(f"/ledger?user_id={user_id}").text) == [6]
    assert ids(viewer.get("/ledger?asset=DIAMOND&kind=topup").text) == [6]
    assert ids(viewer.get("/ledger?reference_id=seed:topup:bob").text) == [5]
    assert ids(viewer.get("/ledger?since=2000-01-01T00:00&until=2000-01-02T00:00").text) == []
    assert len(ids(viewer.get("/ledger?since=2000-01-01T00:00").text)) == 6


def test_an_htmx_filter_gets_only_the_filters_and_results(login):
    response = login("viewer").htmx("GET", "/ledger?kind=genesis")
    assert response.text.lstrip().startswith('<div id="ledger">') and "<html" not in response.text
    assert len(ids(response.text)) == 3


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


def test_the_transaction_page_shows_postings_actor_and_links(login):
    page = login("viewer").get("/ledger/4").text
    assert "seed:topup:alice" in page and "Opening balance" in page and "system" in page
    assert '<a href="/users/2?asset=GOLD">alice</a>' in page
    assert "+100" in page and "\u2212100" in page


def test_an_admin_reverses_a_transaction_once(login):
    admin = login("admin")
    admin.get("/ledger/4")
    response = admin.post("/ledger/4/reversal", REVERSAL)
    assert response.status_code == 303
    reversal_id = int(response.headers["Location"].rsplit("/", 1)[1])
    again = admin.post("/ledger/4/reversal", REVERSAL)  # the same form again: a replay
    assert again.headers["Location"] == f"/ledger/{reversal_id}"
    page = admin.get("/ledger/4").text
    assert f'Reversed by</dt><dd><a href="/ledger/{reversal_id}">' in page
    assert "Reverse this transaction" not in page
    db.session.rollback()
    assert queries.get_transaction(reversal_id).actor == "operator:admin"


def test_a_reversal_needs_confirmation_and_a_reason(login):
    admin = login("admin")
    admin.get("/ledger/4")
    response = admin.post("/ledger/4/reversal", {"reason": "", "reference_id": "web-r2"})
    assert response.status_code == 422
    assert 'id="confirm-error"' in response.text and 'id="reason-error"' in response.text
    db.session.rollback()
    assert queries.reversal_of(4) is None


def test_a_second_reversal_under_another_reference_is_refused(login):
    admin = login("admin")
    admin.get("/ledger/4")
    admin.post("/ledger/4/reversal", REVERSAL)
    response = admin.post("/ledger/4/reversal", {**REVERSAL, "reference_id": "web-reverse-2"})
    assert response.status_code == 422 and "already reversed" in response.text


def test_a_reversal_under_a_reference_another_caller_took_is_refused_with_a_fresh_form(login):
    spent = ledger.spend(2, "GOLD", 5, "web-spend-to-reverse")
    ledger.topup(2, "GOLD", 1, "web-taken", actor=ledger.Actor("api:shop"))
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
    admin = login("admin")
    assert "Reverse this transaction" not in admin.get("/ledger/1").text
    response = admin.post("/ledger/1/reversal", REVERSAL)
    assert response.status_code == 422 and "cannot be reversed" in response.text


def test_the_csv_is_the_apis_csv_for_the_same_filters(login, app):
    viewer = login("viewer")
    page = viewer.get("/ledger?kind=topup&asset=GOLD").text
    assert 'href="/ledger/transactions.csv?kind=topup&amp;asset=GOLD"' in page
    dashboard = viewer.get("/ledger/transactions.csv?kind=topup&asset=GOLD")
    token = api_keys.create_key("csv-check", "read")[1]
    api = Browser(app).get("/api/v1/transactions.csv?kind=topup&asset=GOLD",
                           headers={"Authorization": f"Bearer {token}"})
    assert dashboard.status_code == 200 and dashboard.mimetype == "text/csv"
    assert dashboard.data == api.data
    rows = list(csv.DictReader(io.StringIO(dashboard.text)))
    assert {row["reference_id"] for row in rows} == {"seed:topup:alice", "seed:topup:bob"}


def test_the_csv_with_invalid_filters_goes_back_to_the_form(login):
    response = login("viewer").get("/ledger/transactions.csv?user_id=abc")
    assert response.status_code == 302 and response.headers["Location"].startswith("/ledger?")
