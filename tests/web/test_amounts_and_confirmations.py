"""Amounts in their asset's decimals on every kind of page, and confirmations (Flask test client,
real PostgreSQL). EUR, made for these tests, is shown with 2 decimals: 12345 stored is 123.45
shown. GOLD (scale 0) reads as it always has. A movement's answer empties the page's other
confirmations; a reversal says what it reversed and links the new transaction."""
import io
import re

import pytest

from wallet_web import accounts, approvals, assets, controls, holds, ledger, operators, queries
from wallet_web.limits import BALANCE_CEILING
from wallet_web.web.amounts import format_amount

from .conftest import PASSWORD, REASON_CODE, signed_in

EUR = "EUR"
MINUS = "\u2212"


@pytest.fixture
def euro(app) -> str:
    """An asset shown with 2 decimals, its house accounts, and room for 10**15 in a wallet."""
    accounts.ensure_asset(EUR, "Euro", scale=2)
    accounts.ensure_house_accounts(EUR)
    assets.set_limits(EUR, max_amount=BALANCE_CEILING, max_balance=BALANCE_CEILING)
    return EUR


@pytest.fixture
def eve(euro, make_user) -> int:
    """A user holding 123.45 EUR (12345 stored) from one top-up."""
    return make_user(balance=12_345, asset=EUR, name="eve")


@pytest.fixture
def topup(eve) -> int:
    """Eve's top-up, which an admin's reversal posts at once (the EUR threshold raised)."""
    controls.set_policy(EUR, 10**6, 10**7)
    return queries.find_transaction_by_reference(f"fixture:eve:{EUR}").id


def movement(kind: str, amount: int, asset: str = EUR, reference: str = "web-amounts-1") -> dict:
    return {f"{kind}-asset": asset, f"{kind}-amount": str(amount), f"{kind}-reason": "Goodwill",
            f"{kind}-reason_code": REASON_CODE, f"{kind}-reference_id": reference}


def reversal_form(reference: str = "web-reverse-eur") -> dict:
    return {"reason_code": REASON_CODE, "reason": "Charged twice", "confirm": "y",
            "reference_id": reference}


def shown(html: str, css_class: str) -> list[str]:
    """The amounts in cells of that class, as written (the money macro's number)."""
    return re.findall(rf'class="num {css_class}"><span class="money">([^&]+)&nbsp;', html)


def amounts_in(html: str, asset: str = EUR) -> list[str]:
    """Every amount of `asset` the money macro wrote."""
    return re.findall(rf'<span class="money">([^&]+)&nbsp;<abbr class="asset" title="{asset}">',
                      html)


def row_of(html: str, asset: str = EUR) -> str:
    return re.search(rf'<tr data-asset="{asset}">(.*?)</tr>', html, re.S).group(1)


# ---------------------------------------------------------------- the one function


@pytest.mark.parametrize("value, asset, signed, text", [
    (12_345, EUR, False, "123.45"),
    (5, EUR, False, "0.05"),
    (0, EUR, False, "0.00"),
    (0, EUR, True, "0.00"),
    (-12_345, EUR, False, "-123.45"),
    (12_345, EUR, True, "+123.45"),
    (-12_345, EUR, True, f"{MINUS}123.45"),
    (10**15, EUR, False, "10,000,000,000,000.00"),
    (-10**15, EUR, True, f"{MINUS}10,000,000,000,000.00"),
    (None, EUR, False, ""),
    (12_345, "GOLD", False, "12,345"),
    (-12_345, "GOLD", False, "-12,345"),
    (5, "GOLD", True, "+5"),
    (-5, "GOLD", True, f"{MINUS}5"),
    (0, "GOLD", True, "0"),
    (10**15, "GOLD", False, "1,000,000,000,000,000"),
    (1_234, None, False, "1,234"),  # a count
])
def test_an_amount_is_written_in_its_assets_decimals(euro, value, asset, signed, text):
    assert format_amount(value, asset, signed=signed) == text


def test_the_audit_trail_writes_an_amount_without_separators(euro):
    assert format_amount(123_456, EUR, grouped=False) == "1234.56"
    assert format_amount(123_456, "GOLD", grouped=False) == "123456"


# ---------------------------------------------------------------- each kind of page


def test_the_user_page_shows_balances_history_and_limits_in_decimals(login, eve):
    page = login("operator").get(f"/users/{eve}?asset=EUR").text
    eur = row_of(page)
    assert (shown(eur, "balance"), shown(eur, "held")) == (["123.45"], ["0.00"])
    assert shown(row_of(page, "GOLD"), "balance") == ["0"]  # scale 0 as before
    history = page.split('id="history"', 1)[1]
    assert "+123.45&nbsp;" in history  # the top-up, then the balance after it
    assert '<td class="num"><span class="money">123.45&nbsp;' in history
    limits = re.search(r'id="limits".*?</div>', page, re.S).group(0)
    assert '<td class="num">100.00</td><td class="num left-today">500.00</td>' in row_of(limits)
    assert ">Amount (smallest unit)</label>" in page  # still entered as stored


def test_a_spend_confirms_and_lists_a_negative_amount_in_decimals(login, eve):
    operator = login("operator")
    operator.get(f"/users/{eve}")
    response = operator.htmx("POST", f"/users/{eve}/spend", movement("spend", 2_345))
    assert response.status_code == 200, response.text
    assert "Spend of 23.45 EUR recorded as transaction #" in response.text
    assert "New EUR balance: 100.00." in response.text
    assert f"{MINUS}23.45&nbsp;" in response.text.split('id="history"', 1)[1]
    assert shown(row_of(response.text), "balance") == ["100.00"]


def test_a_refusal_states_the_balance_in_decimals(login, eve):
    operator = login("operator")
    operator.get(f"/users/{eve}")
    assert operator.htmx("POST", f"/users/{eve}/spend",
                         movement("spend", 9_999)).status_code == 200
    response = operator.htmx("POST", f"/users/{eve}/spend",
                             movement("spend", 9_999, reference="web-amounts-2"))
    assert response.status_code == 422
    assert "Not enough EUR: the wallet holds 23.46." in response.text


def test_the_largest_balance_reads_in_full(login, euro, make_user):
    rich = make_user(balance=10**15, asset=EUR, name="rich")
    page = login("viewer").get(f"/users/{rich}?asset=EUR").text
    assert shown(row_of(page), "balance") == ["10,000,000,000,000.00"]
    assert "+10,000,000,000,000.00&nbsp;" in page


def test_the_ledger_and_the_transaction_page_show_both_legs_in_decimals(login, topup):
    viewer = login("viewer")
    assert "+123.45&nbsp;" in viewer.get("/ledger?asset=EUR").text
    page = viewer.get(f"/ledger/{topup}").text
    assert "+123.45&nbsp;" in page and f"{MINUS}123.45&nbsp;" in page
    assert "123.45" in amounts_in(page)  # the wallet's balance after


def test_the_overview_shows_holdings_and_volume_in_decimals(login, eve):
    page = login("viewer").get("/").text
    holdings = re.search(r'<th scope="row">EUR</th>(.*?)</tr>', page, re.S).group(1)
    assert amounts_in(holdings) == ["123.45", "0.00", "-123.45", "0.00", "0.00", "0.00"]
    assert "123.45" in amounts_in(page.split("Today's volume", 1)[1])
    assert "busiest day 123.45 EUR" in page


def test_a_hold_shows_in_decimals_on_the_user_and_transaction_pages(login, eve):
    hold = holds.place(eve, EUR, 1_234, "shop-eur", expires_in_seconds=600).hold
    viewer = login("viewer")
    page = viewer.get(f"/users/{eve}").text
    assert (shown(row_of(page), "balance"), shown(row_of(page), "held")) == (["111.11"],
                                                                              ["12.34"])
    assert "<h3><span class=\"money\">12.34&nbsp;" in page
    assert amounts_in(viewer.get(f"/ledger/{hold.hold_transaction_id}").text)[0] == "12.34"


def test_a_request_waiting_for_approval_shows_its_amount_in_decimals(login, eve):
    maker = operators.create_operator("maker", PASSWORD, "operator")
    intent = approvals.Intent("topup", "eur-request-1", REASON_CODE, "Needs a checker", EUR,
                              20_000, user_id=eve)
    request_id = approvals.submit(intent, signed_in(maker)).request_id
    checker = login("operator", "checker", can_approve=True)
    assert amounts_in(checker.get("/approvals").text) == ["200.00"]
    assert amounts_in(checker.get(f"/approvals/{request_id}").text) == ["200.00"]


def test_a_bulk_grant_shows_totals_rows_and_threshold_in_decimals(login, eve):
    operator = login("operator")
    operator.get("/bulk")
    data = f"user_id,asset,amount\n{eve},EUR,12345\n".encode()
    response = operator.post("/bulk", {"file": (io.BytesIO(data), "eur.csv"), "kind": "bonus"})
    assert response.status_code == 303, response.text
    page = operator.get(response.headers["Location"]).text
    assert amounts_in(page) == ["123.45", "123.45"]  # the total, the largest row
    assert "needed (from 100.00)" in page


def test_the_explained_balance_shows_its_statement_in_decimals(login, eve):
    ledger.spend(eve, EUR, 2_345, "eur-spend-1")
    page = login("viewer").get(f"/users/{eve}/explain?asset=EUR").text
    assert amounts_in(page) == ["0.00", "100.00"]  # opening, closing
    assert "Opening 0.00 + postings 100.00 = 100.00" in page
    assert "+123.45</td>" in page and f"{MINUS}23.45</td>" in page
    assert "<td class=\"num net\">+100.00</td>" in page


def test_the_audit_trail_shows_amounts_of_an_asset_in_decimals(login, eve):
    operator = login("operator")
    operator.get(f"/users/{eve}")
    operator.htmx("POST", f"/users/{eve}/topup", movement("topup", 1_234))
    controls.set_policy(EUR, 5_000, 100_000)
    page = login("auditor").get("/audit").text
    assert '<span class="muted">amount:</span> 12.34</span>' in page
    assert '<span class="muted">approval_threshold:</span> 100.00 → 50.00</span>' in page
    assert '<span class="muted">operator_daily_limit:</span> 500.00 → 1000.00</span>' in page


# ---------------------------------------------------------------- confirmations


@pytest.mark.parametrize("kind", ["topup", "spend", "transfer", "release"])
def test_every_movement_answer_empties_the_other_confirmations_on_the_page(
        login, eve, make_user, kind):
    """The form that posted shows its own confirmation; the one of the movement before goes."""
    operator = login("operator")
    operator.get(f"/users/{eve}")
    path, form = f"/users/{eve}/{kind}", movement(kind, 100)
    if kind == "transfer":
        form["transfer-to_user_id"] = str(make_user(name="tom"))
    elif kind == "release":
        hold = holds.place(eve, EUR, 100, "shop-eur", expires_in_seconds=600).hold
        path = f"/users/{eve}/holds/{hold.id}/release"
        form = {f"release-{hold.id}-{name}": value for name, value in {
            "reason_code": REASON_CODE, "reason": "Delivery failed",
            "reference_id": "web-release-eur"}.items()}
    response = operator.htmx("POST", path, form)
    assert response.status_code == 200, response.text
    assert '<div hx-swap-oob="innerHTML:.confirmation"></div>' in response.text
    assert response.text.count('role="status"') == 1


def test_a_reversal_confirms_what_it_reversed_and_links_the_new_transaction(login, topup):
    admin = login("admin")
    page = admin.get(f"/ledger/{topup}").text
    assert 'id="reversal"' in page and f'hx-post="/ledger/{topup}/reversal"' in page
    response = admin.htmx("POST", f"/ledger/{topup}/reversal", reversal_form())
    assert response.status_code == 200, response.text
    reversal = queries.reversal_of(topup).id
    confirmation = re.search(r'<p class="success" role="status".*?</p>', response.text,
                             re.S).group(0)
    assert f"Transaction #{topup} (Top up of 123.45 EUR) is reversed" in confirmation
    assert f'<a href="/ledger/{reversal}">transaction #{reversal}</a>' in confirmation
    assert 'id="facts" hx-swap-oob="true"' in response.text
    assert f'Reversed by</dt><dd><a href="/ledger/{reversal}">' in response.text
    assert "<form" not in response.text  # nothing left to reverse


def test_without_javascript_a_reversal_is_a_flash_on_the_new_transaction(login, topup):
    admin = login("admin")
    admin.get(f"/ledger/{topup}")
    response = admin.post(f"/ledger/{topup}/reversal", reversal_form())
    assert response.status_code == 303
    reversal = queries.reversal_of(topup).id
    page = admin.get(response.headers["Location"]).text
    assert (f"Transaction #{topup} reversed by transaction #{reversal}. "
            "Top up of 123.45 EUR moved back.") in page


def test_a_reversal_sent_for_approval_confirms_with_a_link_to_its_request(login, customer):
    controls.set_policy("GOLD", 1, 50_000)  # every reversal waits for a checker
    admin = login("admin")
    admin.get(f"/ledger/{customer.opening_id}")
    response = admin.htmx("POST", f"/ledger/{customer.opening_id}/reversal", reversal_form())
    assert response.status_code == 200, response.text
    assert "Sent for approval (request #" in response.text
    assert re.search(r'<a href="/approvals/\d+">View request #\d+</a>', response.text)
    assert queries.reversal_of(customer.opening_id) is None


def test_a_refused_htmx_reversal_answers_with_the_form_and_its_errors(login, topup):
    admin = login("admin")
    admin.get(f"/ledger/{topup}")
    response = admin.htmx("POST", f"/ledger/{topup}/reversal", {**reversal_form(), "confirm": ""})
    assert response.status_code == 422
    assert response.text.lstrip().startswith('<section class="card narrow" id="reversal"')
    assert "Tick to confirm the reversal." in response.text
    assert queries.reversal_of(topup) is None


def test_an_operators_daily_limits_read_in_their_assets_decimals(login, euro, make_operator):
    controls.set_policy(EUR, 10**6, 123_456)
    carol = make_operator("operator", "carol")
    page = login("admin").get(f"/admin/operators/{carol.id}").text
    row = page.split(f'<tr data-asset="{EUR}">', 1)[1].split("</tr>", 1)[0]
    assert "1,234.56" in row and "123456" not in row and "123,456" not in row
