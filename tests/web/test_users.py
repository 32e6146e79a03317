"""Lookup, the user page and the movement forms (htmx and plain posts)."""
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from wallet_web import ledger, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import Browser

ALICE = 2


def movement(kind="topup", amount="250", reason="Goodwill", reference="web-test-1", asset="GOLD"):
    return {f"{kind}-asset": asset, f"{kind}-amount": amount, f"{kind}-reason": reason,
            f"{kind}-reference_id": reference}


def gold(user_id: int = ALICE) -> int:
    db.session.rollback()  # read what other connections committed
    return next(a.balance for a in queries.user_balances(user_id)
                if a.kind == "wallet" and a.asset_code == "GOLD")


def count_transactions() -> int:
    db.session.rollback()
    return db.session.query(Transaction).count()


def references(html: str, kind: str) -> list[str]:
    return re.findall(rf'name="{kind}-reference_id" type="hidden" value="([^"]+)"', html)


# ---------------------------------------------------------------- lookup


@pytest.mark.parametrize("term", ["2", "ali", "ALICE@example"])
def test_lookup_finds_a_user_by_id_name_or_email(login, term):
    viewer = login("viewer")
    response = viewer.htmx("GET", f"/users?q={term}")
    assert response.status_code == 200
    assert '<a href="/users/2">alice</a>' in response.text
    assert "<html" not in response.text  # the partial only
    assert "HX-Request" in response.headers["Vary"]


def test_lookup_without_htmx_is_a_full_page(login):
    page = login("viewer").get("/users?q=bob")
    assert "<html" in page.text and '<a href="/users/3">bob</a>' in page.text


def test_a_boosted_or_history_restore_request_gets_the_full_page(login):
    viewer = login("viewer")
    for header in ("HX-Boosted", "HX-History-Restore-Request"):
        page = viewer.get("/users?q=bob", headers={"HX-Request": "true", header: "true"})
        assert "<html" in page.text


def test_a_reference_jumps_to_its_transaction(login):
    viewer = login("viewer")
    response = viewer.get("/users?q=seed:topup:alice")
    assert response.status_code == 302 and response.headers["Location"] == "/ledger/4"
    partial = viewer.htmx("GET", "/users?q=seed:topup:alice").text
    assert '<a href="/ledger/4">Transaction #4</a>' in partial


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


def test_the_history_link_without_htmx_goes_to_the_page(login):
    response = login("viewer").get("/users/2/history?asset=DIAMOND")
    assert response.status_code == 302 and "/users/2?asset=DIAMOND" in response.headers["Location"]


# ---------------------------------------------------------------- movements


def test_an_htmx_top_up_returns_the_confirmation_a_new_form_and_fresh_balances(login):
    operator = login("operator")
    response = operator.htmx("POST", "/users/2/topup", movement(amount="1,500"))
    assert response.status_code == 200
    assert "Top up of 1,500 GOLD recorded" in response.text
    assert "New GOLD balance: 1,600." in response.text
    assert 'id="balances" hx-swap-oob="true"' in response.text
    assert 'id="history" hx-swap-oob="true"' in response.text and "Goodwill" in response.text
    assert references(response.text, "topup") not in ([], ["web-test-1"])
    assert gold() == 1600


def test_the_movement_records_the_operator_and_the_reason(login):
    operator = login("operator", "olga")
    operator.htmx("POST", "/users/2/bonus", movement("bonus", reference="web-who"))
    db.session.rollback()
    tx = queries.find_transaction_by_reference("web-who")
    assert (tx.kind, tx.actor, tx.description) == ("bonus", "operator:olga", "Goodwill")
    assert tx.operator_id is not None


def test_a_plain_post_redirects_to_the_page_with_a_confirmation(login):
    operator = login("operator")
    response = operator.post("/users/2/spend", movement("spend", amount="40"))
    assert response.status_code == 303 and response.headers["Location"] == "/users/2?asset=GOLD"
    assert "Spend of 40 GOLD recorded" in operator.get("/users/2?asset=GOLD").text
    assert gold() == 60


def test_the_same_form_sent_twice_moves_value_once(login):
    operator = login("operator")
    before = count_transactions()
    first = operator.htmx("POST", "/users/2/topup", movement(reference="web-twice"))
    second = operator.htmx("POST", "/users/2/topup", movement(reference="web-twice"))
    assert first.status_code == second.status_code == 200
    confirmation = "Top up of 250 GOLD recorded as transaction #6. New GOLD balance: 350."
    assert confirmation in first.text and confirmation in second.text
    assert "recorded once" in second.text and "recorded once" not in first.text
    assert count_transactions() == before + 1 and gold() == 350


def test_one_form_posted_twice_at_the_same_instant_moves_value_once(login, app):
    operator = login("operator")
    session = operator.client.get_cookie("session").value
    start = threading.Barrier(2)
    before = count_transactions()

    def submit(_):
        twin = Browser(app)  # its own client, as a second tab with the same session
        twin.client.set_cookie("session", session)
        twin.token = operator.token
        start.wait()
        return twin.htmx("POST", "/users/2/topup", movement(reference="web-race")).text

    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(submit, range(2)))
    assert all("Top up of 250 GOLD recorded as transaction #6." in page for page in pages)
    assert count_transactions() == before + 1 and gold() == 350


def test_the_same_reference_with_other_values_is_refused_with_a_fresh_form(login):
    operator = login("operator")
    operator.post("/users/2/topup", movement(reference="web-reused"))
    response = operator.htmx("POST", "/users/2/topup",
                             movement(amount="999", reference="web-reused"))
    assert response.status_code == 422
    assert "already sent with other values" in response.text
    assert references(response.text, "topup") != ["web-reused"]
    assert gold() == 350


@pytest.mark.parametrize("amount, message", [
    ("", "Enter an amount."),
    ("abc", "Enter a whole number"),
    ("12.5", "Enter a whole number"),
    ("0", "Enter an amount above zero."),
    ("-5", "Enter an amount above zero."),
])
def test_an_invalid_amount_is_an_inline_error_and_moves_nothing(login, amount, message):
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", "/users/2/topup", movement(amount=amount))
    assert response.status_code == 422
    error = re.search(r'id="topup-amount-error">([^<]+)<', response.text).group(1)
    assert error.startswith(message) and error.count("Enter") == 1  # one clear message
    assert 'aria-invalid="true"' in response.text
    assert references(response.text, "topup") == ["web-test-1"]  # a retry keeps its reference
    assert count_transactions() == before


def test_a_reason_is_required(login):
    response = login("operator").htmx("POST", "/users/2/topup", movement(reason="  "))
    assert response.status_code == 422 and 'id="topup-reason-error"' in response.text


def test_a_plain_post_with_errors_renders_the_whole_page(login):
    response = login("operator").post("/users/2/topup", movement(amount="x"))
    assert response.status_code == 422
    assert "<html" in response.text and 'id="topup-amount-error"' in response.text


def test_spending_more_than_the_wallet_holds_is_an_inline_error(login):
    response = login("operator").htmx("POST", "/users/2/spend", movement("spend", amount="101"))
    assert response.status_code == 422
    assert "Not enough GOLD: the wallet holds 100." in response.text
    assert gold() == 100


def test_an_unknown_asset_is_refused(login):
    response = login("operator").htmx("POST", "/users/2/topup", movement(asset="SILVER"))
    assert response.status_code == 422 and 'id="topup-asset-error"' in response.text


def test_a_frozen_wallet_refuses_the_movement(login, wallet_of):
    ledger.set_account_status(wallet_of(ALICE), "frozen")
    response = login("operator").htmx("POST", "/users/2/topup", movement())
    assert response.status_code == 422 and "wallet is frozen" in response.text
    assert gold() == 100


def test_an_operator_is_held_to_the_per_transaction_limit(login, app):
    limit = app.config["OPERATOR_SPEND_LIMIT"]
    response = login("operator").htmx("POST", "/users/2/topup", movement(amount=str(limit + 1)))
    assert response.status_code == 422 and f"Above your limit of {limit:,}" in response.text
    assert gold() == 100


def test_an_admin_may_exceed_the_limit(login, app):
    amount = app.config["OPERATOR_SPEND_LIMIT"] + 1
    response = login("admin").htmx("POST", "/users/2/topup", movement(amount=str(amount)))
    assert response.status_code == 200 and gold() == 100 + amount


def test_a_movement_for_an_unknown_user_is_not_found(login):
    assert login("operator").post("/users/999/topup", movement()).status_code == 404
