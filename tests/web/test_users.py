"""Lookup, the user page and the movement forms (htmx and plain posts)."""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy

from wallet_web import accounts, controls, ledger, operators, queries
from wallet_web.extensions import db

from .conftest import (
    OPENING, REASON_CODE, Browser, count_transactions, gold_of, request_row, threshold,
)

NOWHERE = 10**9  # an id no test creates


def movement(kind="topup", amount="250", reason="Goodwill", reference="web-test-1", asset="GOLD",
             code=REASON_CODE, ticket=None):
    form = {f"{kind}-asset": asset, f"{kind}-amount": amount, f"{kind}-reason": reason,
            f"{kind}-reason_code": code, f"{kind}-reference_id": reference}
    if ticket is not None:
        form[f"{kind}-ticket"] = ticket
    return form


def recorded_as(reference: str) -> int:
    db.session.rollback()
    return queries.find_transaction_by_reference(reference).id


def references(html: str, kind: str) -> list[str]:
    return re.findall(rf'name="{kind}-reference_id" type="hidden" value="([^"]+)"', html)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize("by", ["id", "name", "email"])
def test_lookup_finds_a_user_by_id_name_or_email(login, customer, by):
    term = {"id": str(customer.id), "name": "car", "email": "CARLA@example"}[by]
    viewer = login("viewer")
    response = viewer.htmx("GET", f"/users?q={term}")
    assert response.status_code == 200
    assert f'<a href="{customer.page}">carla</a>' in response.text
    assert "<html" not in response.text  # the partial only
    assert "HX-Request" in response.headers["Vary"]


def test_lookup_without_htmx_is_a_full_page(login, customer):
    page = login("viewer").get("/users?q=carla")
    assert "<html" in page.text and f'<a href="{customer.page}">carla</a>' in page.text


def test_a_boosted_or_history_restore_request_gets_the_full_page(login, customer):
    viewer = login("viewer")
    for header in ("HX-Boosted", "HX-History-Restore-Request"):
        page = viewer.get("/users?q=carla", headers={"HX-Request": "true", header: "true"})
        assert "<html" in page.text


def test_a_reference_jumps_to_its_transaction(login, customer):
    viewer = login("viewer")
    opening = f"/ledger/{customer.opening_id}"
    response = viewer.get("/users?q=opening:carla")
    assert response.status_code == 302 and response.headers["Location"] == opening
    partial = viewer.htmx("GET", "/users?q=opening:carla").text
    assert f'<a href="{opening}">Transaction #{customer.opening_id}</a>' in partial


def test_lookup_says_when_nothing_matches(login):
    assert "Nothing matches" in login("viewer").htmx("GET", "/users?q=zzz").text


# ---------------------------------------------------------------- user page


def test_the_user_page_shows_balances_history_and_a_sparkline(login, make_user):
    user_id = make_user(balance=1_234_567, name="zoe")
    ledger.spend(user_id, "GOLD", 567, "zoe-spend-1", description="Shop")
    page = login("viewer").get(f"/users/{user_id}").text
    assert "1,234,000" in page  # thousands separators
    assert "<polyline" in page
    assert "Shop" in page and "\u2212567" in page


def test_the_user_page_reads_its_choices_once_and_shows_what_is_left_today(login, customer,
                                                                            app):
    browser = login("operator")
    me = operators.find_operator("operator")
    controls.set_operator_limit(me.id, "GOLD", 5_000)  # the other assets keep the policy's
    browser.post(f"{customer.page}/topup", movement(amount="1200", reference="left-1"))
    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    sqlalchemy.event.listen(db.engine, "before_cursor_execute", listen)
    try:
        page = browser.get(customer.page)
    finally:
        sqlalchemy.event.remove(db.engine, "before_cursor_execute", listen)
    left = dict(re.findall(r'<tr data-asset="(\w+)">.*?class="num left-today">([^<]+)<',
                           page.text, re.S))
    policy = controls.policy_for("DIAMOND").operator_daily_limit
    assert left["GOLD"] == "3,800" and left["DIAMOND"] == f"{policy:,}"
    for table in ("reason_codes", "policies", "operator_limits"):
        reads = [sql for sql in statements if re.search(rf"\b(FROM|JOIN) {table}\b", sql)]
        assert len(reads) == 1, table


def test_history_loads_more_with_a_keyset_cursor(login, make_user):
    user_id = make_user(name="yan")
    for n in range(25):
        ledger.topup(user_id, "GOLD", n + 1, f"yan-{n}")
    viewer = login("viewer")
    first = viewer.get(f"/users/{user_id}").text
    assert first.count('class="kind kind-topup"') == 20
    more = re.search(r'hx-get="(/users/\d+/history\?[^"]*cursor=[^"]+)"', first).group(1)
    more = more.replace("&amp;", "&")
    rows = viewer.htmx("GET", more).text
    assert rows.count('class="kind kind-topup"') == 5 and "Load more" not in rows
    assert "<table" not in rows  # only the rows, swapped in place of the "load more" row


def test_the_history_link_without_htmx_goes_to_the_page(login, customer):
    response = login("viewer").get(f"{customer.page}/history?asset=DIAMOND")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{customer.page}?asset=DIAMOND"


# ---------------------------------------------------------------- movements


def test_an_htmx_top_up_returns_the_confirmation_a_new_form_and_fresh_balances(login, customer):
    operator = login("operator")
    response = operator.htmx("POST", f"{customer.page}/topup", movement(amount="1,500"))
    assert response.status_code == 200
    assert "Top up of 1,500 GOLD recorded" in response.text
    assert f"New GOLD balance: {OPENING + 1500:,}." in response.text
    assert 'id="balances" hx-swap-oob="true"' in response.text
    assert 'id="history" hx-swap-oob="true"' in response.text and "Goodwill" in response.text
    assert references(response.text, "topup") not in ([], ["web-test-1"])
    assert gold_of(customer.id) == OPENING + 1500


def test_the_movement_records_the_operator_and_the_reason(login, customer):
    operator = login("operator", "olga")
    operator.htmx("POST", f"{customer.page}/bonus", movement("bonus", reference="web-who"))
    db.session.rollback()
    tx = queries.find_transaction_by_reference("web-who")
    assert (tx.kind, tx.actor, tx.description) == ("bonus", "operator:olga", "Goodwill")
    assert tx.operator_id is not None


def test_a_plain_post_redirects_to_the_page_with_a_confirmation(login, customer):
    operator = login("operator")
    response = operator.post(f"{customer.page}/spend", movement("spend", amount="40"))
    assert response.status_code == 303
    assert response.headers["Location"] == f"{customer.page}?asset=GOLD"
    assert "Spend of 40 GOLD recorded" in operator.get(f"{customer.page}?asset=GOLD").text
    assert gold_of(customer.id) == OPENING - 40


def test_the_same_form_sent_twice_moves_value_once(login, customer):
    operator = login("operator")
    before = count_transactions()
    first = operator.htmx("POST", f"{customer.page}/topup", movement(reference="web-twice"))
    second = operator.htmx("POST", f"{customer.page}/topup", movement(reference="web-twice"))
    assert first.status_code == second.status_code == 200
    confirmation = (f"Top up of 250 GOLD recorded as transaction #{recorded_as('web-twice')}. "
                    f"New GOLD balance: {OPENING + 250}.")
    assert confirmation in first.text and confirmation in second.text
    assert "recorded once" in second.text and "recorded once" not in first.text
    assert count_transactions() == before + 1 and gold_of(customer.id) == OPENING + 250


def test_one_form_posted_twice_at_the_same_instant_moves_value_once(login, customer, app):
    operator = login("operator")
    session = operator.client.get_cookie("session").value
    start = threading.Barrier(2, timeout=60)  # only a hang waits that long
    before = count_transactions()

    def submit(_):
        twin = Browser(app)  # its own client, as a second tab with the same session
        twin.client.set_cookie("session", session)
        twin.token = operator.token
        start.wait()
        return twin.htmx("POST", f"{customer.page}/topup", movement(reference="web-race")).text

    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(submit, range(2)))
    confirmation = f"Top up of 250 GOLD recorded as transaction #{recorded_as('web-race')}."
    assert all(confirmation in page for page in pages)
    assert count_transactions() == before + 1 and gold_of(customer.id) == OPENING + 250


def test_the_same_reference_with_other_values_is_refused_with_a_fresh_form(login, customer):
    operator = login("operator")
    operator.post(f"{customer.page}/topup", movement(reference="web-reused"))
    response = operator.htmx("POST", f"{customer.page}/topup",
                             movement(amount="999", reference="web-reused"))
    assert response.status_code == 422
    assert "already sent with other values" in response.text
    assert references(response.text, "topup") != ["web-reused"]
    assert gold_of(customer.id) == OPENING + 250


@pytest.mark.parametrize("amount, message", [
    ("", "Enter an amount."),
    ("abc", "Enter a whole number"),
    ("12.5", "Enter a whole number"),
    ("0", "Enter an amount above zero."),
    ("-5", "Enter an amount above zero."),
])
def test_an_invalid_amount_is_an_inline_error_and_moves_nothing(login, customer, amount,
                                                                 message):
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", f"{customer.page}/topup", movement(amount=amount))
    assert response.status_code == 422
    error = re.search(r'id="topup-amount-error">([^<]+)<', response.text).group(1)
    assert error.startswith(message) and error.count("Enter") == 1  # one clear message
    assert 'aria-invalid="true"' in response.text
    assert references(response.text, "topup") == ["web-test-1"]  # a retry keeps its reference
    assert count_transactions() == before


def test_a_reason_is_required(login, customer):
    response = login("operator").htmx("POST", f"{customer.page}/topup", movement(reason="  "))
    assert response.status_code == 422 and 'id="topup-reason-error"' in response.text


def test_a_plain_post_with_errors_renders_the_whole_page(login, customer):
    response = login("operator").post(f"{customer.page}/topup", movement(amount="x"))
    assert response.status_code == 422
    assert "<html" in response.text and 'id="topup-amount-error"' in response.text


def test_spending_more_than_the_wallet_holds_is_an_inline_error(login, customer):
    response = login("operator").htmx("POST", f"{customer.page}/spend",
                                      movement("spend", amount=str(OPENING + 1)))
    assert response.status_code == 422
    assert f"Not enough GOLD: the wallet holds {OPENING}." in response.text
    assert gold_of(customer.id) == OPENING


def test_an_unknown_asset_is_refused(login, customer):
    response = login("operator").htmx("POST", f"{customer.page}/topup", movement(asset="SILVER"))
    assert response.status_code == 422 and 'id="topup-asset-error"' in response.text


def test_a_frozen_wallet_refuses_a_spend_and_takes_a_top_up(login, customer, wallet_of):
    accounts.set_account_status(wallet_of(customer.id), "frozen")
    operator = login("operator")
    response = operator.htmx("POST", f"{customer.page}/spend", movement("spend", amount="5"))
    assert response.status_code == 422 and "wallet is frozen" in response.text
    assert gold_of(customer.id) == OPENING
    top_up = movement(reference=references(response.text, "spend")[0])  # the refused one's is spent
    assert operator.htmx("POST", f"{customer.page}/topup", top_up).status_code == 200
    assert gold_of(customer.id) == OPENING + 250


def pending_request_of(html: str) -> int:
    return int(re.search(r"Sent for approval \(request #(\d+)\)\.", html).group(1))


def test_just_below_the_approval_threshold_a_movement_is_posted_at_once(login, customer):
    amount = threshold() - 1
    response = login("operator").htmx("POST", f"{customer.page}/topup",
                                      movement(amount=str(amount)))
    assert response.status_code == 200 and "recorded as transaction #" in response.text
    assert gold_of(customer.id) == OPENING + amount


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_at_the_approval_threshold_a_movement_waits_for_approval_and_moves_nothing(
        login, customer, role):
    before = count_transactions()
    response = login(role).htmx("POST", f"{customer.page}/topup",
                                movement(amount=f"{threshold():,}"))
    assert response.status_code == 200
    request_id = pending_request_of(response.text)
    assert f'<a href="/approvals/{request_id}">View request #{request_id}</a>' in response.text
    assert "recorded as transaction" not in response.text
    assert references(response.text, "topup") not in ([], ["web-test-1"])  # a fresh form
    assert count_transactions() == before and gold_of(customer.id) == OPENING
    row = request_row(request_id)
    assert (row.status, row.kind, row.amount, row.user_id, row.maker) == (
        "pending", "topup", threshold(), customer.id, f"operator:{role}")


def test_without_javascript_a_request_sent_for_approval_is_a_flash_with_its_link(login, customer):
    operator = login("operator")
    response = operator.post(f"{customer.page}/bonus", movement("bonus", amount=str(threshold())))
    assert response.status_code == 303
    assert response.headers["Location"] == f"{customer.page}?asset=GOLD"
    page = operator.get(response.headers["Location"]).text
    flash = re.search(r'<p class="notice">(.*?)</p>', page, re.DOTALL).group(1)
    request_id = pending_request_of(flash)
    assert f'<a href="/approvals/{request_id}">View request #{request_id}</a>' in flash
    assert gold_of(customer.id) == OPENING


def test_the_same_form_sent_twice_above_the_threshold_makes_one_request(login, customer):
    operator = login("operator")
    form = movement(amount=str(threshold()), reference="web-pending-twice")
    first = operator.htmx("POST", f"{customer.page}/topup", form)
    second = operator.htmx("POST", f"{customer.page}/topup", form)
    assert pending_request_of(first.text) == pending_request_of(second.text)
    assert "recorded once" in second.text and "recorded once" not in first.text


# ---------------------------------------------------------------- reason codes and tickets


def test_the_movement_forms_offer_the_active_reason_codes_after_a_blank_choice(login, customer):
    controls.set_reason_code_active("promotion", False)
    page = login("operator").get(customer.page).text
    select = re.search(r'<select[^>]*name="topup-reason_code".*?</select>', page,
                       re.DOTALL).group(0)
    values = re.findall(r'value="([^"]*)"', select)
    assert values[0] == "" and "Choose…" in select
    assert set(values[1:]) == {code.code for code in controls.list_reason_codes()}
    assert "goodwill" in values and "promotion" not in values
    assert 'name="topup-ticket"' in page and 'name="transfer-reason_code"' in page


def test_the_reason_code_and_ticket_are_recorded_with_the_transaction(login, customer):
    operator = login("operator")
    response = operator.htmx("POST", f"{customer.page}/topup",
                             movement(reference="web-coded", code="compensation",
                                      ticket="SUP-1234"))
    assert response.status_code == 200
    db.session.rollback()
    tx = queries.find_transaction_by_reference("web-coded")
    assert (tx.description, tx.meta["reason_code"], tx.meta["ticket"]) == (
        "Goodwill", "compensation", "SUP-1234")
    assert request_row(int(tx.meta["request_id"])).transaction_id == tx.id


@pytest.mark.parametrize("code, message", [
    ("", "Choose a reason code."),
    ("promotion", "Choose a reason code from the list: this one is retired or unknown."),
    ("no_such_code", "Choose a reason code from the list: this one is retired or unknown."),
])
def test_a_missing_retired_or_unknown_reason_code_is_an_inline_error(login, customer, code,
                                                                     message):
    controls.set_reason_code_active("promotion", False)
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", f"{customer.page}/topup", movement(code=code))
    assert response.status_code == 422
    assert re.search(r'id="topup-reason_code-error">([^<]+)<', response.text).group(1) == message
    assert count_transactions() == before and gold_of(customer.id) == OPENING


@pytest.mark.parametrize("ticket", ["javascript:alert(1)", "ftp://x", "http://", "two words",
                                    "https://exa mple.com", "x" * 65])
def test_a_ticket_that_is_neither_an_id_nor_a_web_address_is_an_inline_error(login, customer,
                                                                            ticket):
    before = count_transactions()
    response = login("operator").htmx("POST", f"{customer.page}/topup", movement(ticket=ticket))
    assert response.status_code == 422
    error = re.search(r'id="topup-ticket-error">([^<]+)<', response.text).group(1)
    assert error == "Enter a ticket id such as SUP-1234, or an http:// or https:// link."
    assert references(response.text, "topup") != ["web-test-1"]  # refused: a new request next
    assert count_transactions() == before
    assert 'href="javascript' not in response.text


def test_a_refused_form_is_sent_again_as_a_new_request_once_corrected(login, customer):
    operator = login("operator")
    refused = operator.htmx("POST", f"{customer.page}/topup", movement(ticket="ftp://x"))
    fresh = references(refused.text, "topup")[0]
    response = operator.htmx("POST", f"{customer.page}/topup",
                             movement(ticket="SUP-1", reference=fresh))
    assert response.status_code == 200 and gold_of(customer.id) == OPENING + 250


# ---------------------------------------------------------------- daily limits


def test_above_the_daily_limit_the_message_says_what_is_left_today(login, customer, app):
    operator = login("operator", "olga")
    olga = operators.find_operator("olga")
    controls.set_operator_limit(olga.id, "GOLD", 3_000)
    assert operator.htmx("POST", f"{customer.page}/topup",
                         movement(amount="500", reference="web-day-1")).status_code == 200
    before = count_transactions()
    response = operator.htmx("POST", f"{customer.page}/topup",
                             movement(amount="2,501", reference="web-day-2"))
    assert response.status_code == 422
    assert re.search(r'id="topup-amount-error">([^<]+)<', response.text).group(1) == (
        "Above your daily GOLD limit: 2,500 of 3,000 left today (UTC).")
    assert count_transactions() == before and gold_of(customer.id) == OPENING + 500
    assert operator.htmx("POST", f"{customer.page}/topup", movement(
        amount="2,500", reference=references(response.text, "topup")[0])).status_code == 200


def test_requests_waiting_for_approval_count_against_the_daily_limit(login, customer):
    operator = login("operator", "olga")
    controls.set_policy("GOLD", approval_threshold=1_000, operator_daily_limit=2_500)
    operator.htmx("POST", f"{customer.page}/topup", movement(amount="2,000", reference="web-w1"))
    response = operator.htmx("POST", f"{customer.page}/bonus",
                             movement("bonus", amount="501", reference="web-w2"))
    assert response.status_code == 422
    assert "Above your daily GOLD limit: 500 of 2,500 left today (UTC)." in response.text
    assert gold_of(customer.id) == OPENING


def test_the_user_page_shows_the_threshold_and_what_is_left_today(login, customer):
    operator = login("operator")
    operator.htmx("POST", f"{customer.page}/topup", movement(amount="1,000"))
    page = operator.get(customer.page).text
    row = re.search(r'<tr data-asset="GOLD"><th scope="row">GOLD</th>(.*?)</tr>', page,
                    re.DOTALL).group(1)
    left = controls.policy_for("GOLD").operator_daily_limit - 1000
    assert f"{threshold():,}" in row and f"{left:,}" in row


def test_a_movement_for_an_unknown_user_is_not_found(login):
    assert login("operator").post(f"/users/{NOWHERE}/topup", movement()).status_code == 404
