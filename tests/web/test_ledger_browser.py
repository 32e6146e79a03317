"""Ledger browser: filters in the URL, keyset pages, the transaction page, reversal, CSV."""
import csv
import io
import json
import re

import pytest
from sqlalchemy import select

from wallet_web import api_keys, controls, ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import OPENING, REASON_CODE, Browser, gold_of, request_row, threshold

REVERSAL = {"reason": "Charged twice", "reason_code": REASON_CODE, "confirm": "y",
            "reference_id": "web-reverse-1"}


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
    form = {**REVERSAL, "ticket": "SUP-9"}
    response = admin.post(f"{opening}/reversal", form)
    assert response.status_code == 303
    reversal_id = int(response.headers["Location"].rsplit("/", 1)[1])
    reversed_page = admin.get(response.headers["Location"]).text
    assert f"Transaction #{customer.opening_id} reversed by transaction #{reversal_id}." in (
        reversed_page)
    assert "SUP-9" in reversed_page and "Charged twice" in reversed_page
    again = admin.post(f"{opening}/reversal", form)  # the same form again: a replay
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
    for field in ("confirm", "reason", "reason_code"):
        assert f'id="{field}-error"' in response.text
    db.session.rollback()
    assert queries.reversal_of(customer.opening_id) is None


def test_a_second_reversal_under_another_reference_is_refused(login, customer):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    assert admin.post(f"{opening}/reversal", REVERSAL).status_code == 303
    response = admin.post(f"{opening}/reversal", {**REVERSAL, "reference_id": "web-reverse-2"})
    assert response.status_code == 422 and "already reversed" in response.text
    assert 'value="web-reverse-2"' not in response.text  # a refused request keeps its reference
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


def test_the_manifest_sits_beside_the_csv_and_the_pair_verifies_offline(login, customer,
                                                                          tmp_path):
    from tests.integration.test_chain import seal_all
    from wallet_web import verify_export

    ledger.topup(customer.id, "GOLD", 7, "manifest-topup")
    seal_all()
    viewer = login("viewer", "vera")
    filters = f"kind=topup&user_id={customer.id}"
    page = viewer.get(f"/ledger?{filters}").text
    assert f'href="/ledger/transactions.manifest.json?{filters.replace("&", "&amp;")}"' in page
    manifest = viewer.get(f"/ledger/transactions.manifest.json?{filters}").json
    assert manifest["csv_url"] == (f"/ledger/transactions.csv?{filters}"
                                   f"&through_seq={manifest['through_seq']}")
    assert (manifest["complete"], manifest["entries"]) == (False, 2)
    (tmp_path / "export.csv").write_bytes(viewer.get(manifest["csv_url"]).data)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert verify_export.main([str(tmp_path / "export.csv"), str(tmp_path / "manifest.json")]) == 0
    everything = viewer.get("/ledger/transactions.manifest.json").json
    assert everything["complete"] is True and everything["first_seq"] == 1
    assert [event.details for event in exported()][-1] == {"filters": {}}
    assert viewer.get("/ledger/transactions.manifest.json?through_seq=x").status_code == 302


def test_a_csv_download_is_recorded_with_its_filters_before_it_streams(app, login, customer):
    viewer = login("viewer", "vera")
    session = viewer.client.get_cookie("session").value
    path = f"/ledger/transactions.csv?kind=topup&user_id={customer.id}&reason_code=goodwill"
    with app.test_request_context(path, headers={"Cookie": f"session={session}"}):
        response = app.full_dispatch_request()
        db.session.remove()  # the request's own session: the events are read afresh below
        events = exported()
        assert [(event.actor, event.details) for event in events] == [
            ("operator:vera", {"filters": {"kind": "topup", "user_id": str(customer.id),
                                           "reason_code": "goodwill"}})]
        assert response.is_streamed  # recorded while nothing was sent yet
        "".join(response.response)
    viewer.get("/ledger/transactions.csv")
    assert [event.details for event in exported()][1:] == [{"filters": {}}]


def exported() -> list:
    from wallet_web.models import AuditEvent
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).filter_by(action="export.downloaded")
                                   .order_by(AuditEvent.id)))


def test_the_csv_with_invalid_filters_goes_back_to_the_form(login):
    response = login("viewer").get("/ledger/transactions.csv?user_id=abc")
    assert response.status_code == 302 and response.headers["Location"].startswith("/ledger?")


# ---------------------------------------------------------------- operator controls


def dashboard_movement(browser, customer, reference: str, code: str = REASON_CODE,
                       ticket: str = "", amount: int = 5, kind: str = "topup") -> int:
    """A movement made on the user page; its transaction id."""
    browser.get(customer.page)
    response = browser.post(f"{customer.page}/{kind}", {
        f"{kind}-asset": "GOLD", f"{kind}-amount": str(amount), f"{kind}-reason": "Controls",
        f"{kind}-reason_code": code, f"{kind}-ticket": ticket,
        f"{kind}-reference_id": reference})
    assert response.status_code == 303, response.text
    db.session.rollback()
    return queries.find_transaction_by_reference(reference).id


def test_the_ledger_filters_by_reason_code_and_ticket_kept_in_the_url(login, customer):
    operator = login("operator")
    goodwill = dashboard_movement(operator, customer, "web-c1", ticket="SUP-1")
    fixed = dashboard_movement(operator, customer, "web-c2", code="correction", ticket="SUP-2")
    linked = dashboard_movement(operator, customer, "web-c3", code="correction",
                                ticket="https://tickets.example/SUP-3")
    assert ids(operator.get("/ledger?reason_code=goodwill").text) == [goodwill]
    assert ids(operator.get("/ledger?reason_code=correction").text) == [linked, fixed]
    assert ids(operator.get("/ledger?ticket=SUP-2").text) == [fixed]
    assert ids(operator.get("/ledger?ticket=SUP").text) == []  # exact, not a prefix
    page = operator.get("/ledger?reason_code=correction&ticket=https://tickets.example/SUP-3").text
    assert ids(page) == [linked]
    assert '<option selected value="correction">' in page
    assert 'value="https://tickets.example/SUP-3"' in page
    assert ('href="/ledger/transactions.csv?reason_code=correction&amp;'
            'ticket=https://tickets.example/SUP-3"') in page


def test_the_reason_code_filter_offers_every_code_retired_ones_too(login, customer):
    operator = login("operator")
    coded = dashboard_movement(operator, customer, "web-retire", code="promotion")
    controls.set_reason_code_active("promotion", False)
    page = operator.get("/ledger?reason_code=promotion").text
    assert ids(page) == [coded]
    assert re.search(r'<option selected value="promotion">[^<]*\(retired\)</option>', page)
    assert '<option value="">Any reason code</option>' in page
    refused = operator.get("/ledger?reason_code=no_such_code")
    assert refused.status_code == 422 and 'id="reason_code-error"' in refused.text


def test_the_table_shows_reason_code_ticket_maker_and_checker(login, customer, make_request):
    request_id = make_request(customer.id)
    checker = login("admin", "bob")
    checker.get(f"/approvals/{request_id}")
    checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Checked"})
    operator = login("operator", "olga")
    dashboard_movement(operator, customer, "web-t1", ticket="https://tickets.example/a?b=1&c=2")
    rows = operator.get(f"/ledger?user_id={customer.id}").text
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
             for row in re.findall(r"<tr>(.*?)</tr>", rows, re.DOTALL)]
    posted, approved = [[cell.strip() for cell in row] for row in cells if row][:2]
    link = ('<a class="ticket" href="https://tickets.example/a?b=1&amp;c=2" '
            'rel="noopener noreferrer" target="_blank">https://tickets.example/a?b=1&amp;c=2</a>')
    assert posted[4:7] == ["goodwill", "Controls", link]
    assert posted[9:] == ["operator:olga", ""]
    assert approved[4:6] == ["goodwill", "Needs a checker"] and approved[9:] == [
        "operator:maker", "operator:bob"]


def test_the_transaction_page_shows_the_controls_of_an_approved_movement(login, customer,
                                                                        make_request):
    request_id = make_request(customer.id, ticket="SUP-42")
    checker = login("admin", "bob")
    checker.get(f"/approvals/{request_id}")
    checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Checked"})
    tx_id = request_row(request_id).transaction_id
    page = login("operator", "olga").get(f"/ledger/{tx_id}").text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>(.*?)</dd>", page, re.DOTALL))
    assert facts["Reason code"] == '<span class="mono">goodwill</span> · Goodwill'
    assert facts["Ticket"] == '<span class="ticket mono">SUP-42</span>'
    assert facts["Maker"].startswith("operator:maker")
    assert facts["Checker"].startswith("operator:bob")
    assert facts["Request"] == f'<a href="/approvals/{request_id}">#{request_id}</a>'


def test_a_reversal_at_the_approval_threshold_waits_for_another_admin(login, make_user):
    user_id = make_user(balance=threshold(), name="whale")
    topup = ledger.topup(user_id, "GOLD", 1, "whale-topup")  # below: the balance is above it
    big = ledger.spend(user_id, "GOLD", threshold(), "whale-spend")
    admin = login("admin")
    admin.get(f"/ledger/{big.id}")
    response = admin.post(f"/ledger/{big.id}/reversal", REVERSAL)
    assert response.status_code == 303 and response.headers["Location"] == f"/ledger/{big.id}"
    page = admin.get(response.headers["Location"]).text
    request_id = int(re.search(r"Sent for approval \(request #(\d+)\)", page).group(1))
    assert f'<a href="/approvals/{request_id}">View request #{request_id}</a>' in page
    assert queries.reversal_of(big.id) is None and gold_of(user_id) == 1
    row = request_row(request_id)
    assert (row.kind, row.reverses_id, row.amount, row.user_id) == (
        "reversal", big.id, threshold(), user_id)
    other = login("admin", "second-admin")
    other.get(f"/approvals/{request_id}")
    assert other.post(f"/approvals/{request_id}/approve",
                      {"approve-reason": "Agreed"}).status_code == 303
    assert gold_of(user_id) == threshold() + 1
    assert topup.id != big.id


@pytest.mark.parametrize("field, value, error", [
    ("reason_code", "no_such_code", "Choose a reason code from the list"),
    ("ticket", "javascript:alert(1)", "Enter a ticket id such as SUP-1234"),
])
def test_a_reversal_with_a_bad_reason_code_or_ticket_is_an_inline_error(login, customer, field,
                                                                        value, error):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    response = admin.post(f"{opening}/reversal", {**REVERSAL, field: value})
    assert response.status_code == 422
    assert re.search(rf'id="{field}-error">([^<]+)<', response.text).group(1).startswith(error)
    assert queries.reversal_of(customer.opening_id) is None and gold_of(customer.id) == OPENING
    assert 'value="web-reverse-1"' not in response.text


def test_an_api_callers_metadata_does_not_pass_for_an_operators_controls(login, customer):
    forged = {"reason_code": "goodwill", "ticket": "SUP-1", "checker": "operator:bob",
              "checker_id": "1", "request_id": "1"}
    tx = ledger.topup(customer.id, "GOLD", 5, "api-forged", metadata=forged,
                      actor=ledger.Actor("api:shop"))
    viewer = login("viewer")
    page = viewer.get(f"/ledger/{tx.id}").text
    assert "<dt>Checker</dt>" not in page and "<dt>Reason code</dt>" not in page
    assert "<dt>Request</dt>" not in page and "operator:bob" not in page
    assert "operator:bob" not in viewer.get("/ledger?reference_id=api-forged").text
