"""Lookup, the user page and the movement forms (htmx and plain posts)."""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from wallet_web import accounts, ledger, queries
from wallet_web.extensions import db

from .conftest import OPENING, Browser, count_transactions, gold_of

NOWHERE = 10**9  # an id no test creates


def movement(kind="topup", amount="250", reason="Goodwill", reference="web-test-1", asset="GOLD"):
    return {f"{kind}-asset": asset, f"{kind}-amount": amount, f"{kind}-reason": reason,
            f"{kind}-reference_id": reference}


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
    assert operator.htmx("POST", f"{customer.page}/topup", movement()).status_code == 200
    assert gold_of(customer.id) == OPENING + 250


def test_an_operator_is_held_to_the_per_transaction_limit(login, customer, app):
    limit = app.config["OPERATOR_SPEND_LIMIT"]
    response = login("operator").htmx("POST", f"{customer.page}/topup",
                                      movement(amount=str(limit + 1)))
    assert response.status_code == 422 and f"Above your limit of {limit:,}" in response.text
    assert gold_of(customer.id) == OPENING


def test_an_admin_may_exceed_the_limit(login, customer, app):
    amount = app.config["OPERATOR_SPEND_LIMIT"] + 1
    response = login("admin").htmx("POST", f"{customer.page}/topup", movement(amount=str(amount)))
    assert response.status_code == 200 and gold_of(customer.id) == OPENING + amount


def test_a_movement_for_an_unknown_user_is_not_found(login):
    assert login("operator").post(f"/users/{NOWHERE}/topup", movement()).status_code == 404
