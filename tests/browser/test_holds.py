"""Holds in the support view, in a real browser (Chromium, real HTTP, PostgreSQL): a shop's
server holds coins over the API, support sees them set aside on the user's page, and an
operator releases them back to the wallet."""
import re

from playwright.sync_api import expect

from tests.web.conftest import OPENING, gold_of
from wallet_web import api_keys, queries
from wallet_web.extensions import db

from .conftest import screenshot


def hold_over_the_api(page, customer, amount: int) -> int:
    """POST /api/v1/holds with a write key, as a shop's server would; the hold's id."""
    _, token = api_keys.create_key("shop-server", "write")
    response = page.request.post("/api/v1/holds", headers={"Authorization": f"Bearer {token}"},
                                 data={"user_id": customer.id, "asset": "GOLD", "amount": amount,
                                       "reference_id": "order-4711",
                                       "description": "Dragon saddle, order 4711"})
    assert response.status == 201, response.text()
    return response.json()["id"]


def gold_cells(page):
    row = page.locator('#balances tr[data-asset="GOLD"]')
    return row.locator(".balance"), row.locator(".held")


def shows(cell, amount: int) -> None:
    expect(cell).to_have_text(re.compile(rf"^\s*{amount:,}\sGOLD\s*$"))


def test_support_sees_a_hold_and_an_operator_releases_it_back_to_the_wallet(log_in, customer):
    page = log_in("operator", "olga")
    hold_id = hold_over_the_api(page, customer, 40)
    page.goto(customer.page)
    available, held = gold_cells(page)
    shows(available, OPENING - 40)
    shows(held, 40)
    hold = page.locator(f"#hold-{hold_id}")
    expect(hold).to_contain_text("Dragon saddle, order 4711")
    expect(hold).to_contain_text("order-4711")
    expect(hold.locator(".expires")).to_contain_text(" UTC")
    screenshot(page, "user-holds")

    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    hold.get_by_label("Reason code").select_option("goodwill")
    hold.get_by_label("Reason", exact=True).fill("Delivery failed")
    hold.get_by_role("button", name=f"Release hold #{hold_id}").click()
    expect(hold.locator(".success")).to_contain_text(
        f"Released hold #{hold_id}: 40 GOLD back to the wallet.")
    shows(available, OPENING)
    shows(held, 0)
    expect(page.locator("#history tbody tr").first).to_contain_text("Delivery failed")
    assert page.evaluate("window.loadedOnce") is True
    db.session.rollback()
    assert queries.get_hold(hold_id).status == "voided" and gold_of(customer.id) == OPENING
    assert page.console_problems == []


def test_a_release_without_a_reason_is_refused_on_its_field_and_moves_nothing(log_in, customer):
    page = log_in("operator")
    hold_id = hold_over_the_api(page, customer, 40)
    page.goto(customer.page)
    hold = page.locator(f"#hold-{hold_id}")
    hold.get_by_label("Reason code").select_option("goodwill")
    hold.get_by_role("button", name=f"Release hold #{hold_id}").click()
    expect(hold.locator(f"#release-{hold_id}-reason-error")).to_have_text(
        "Say why (it is recorded).")
    expect(hold.get_by_label("Reason", exact=True)).to_have_attribute("aria-invalid", "true")
    shows(gold_cells(page)[1], 40)
    assert gold_of(customer.id) == OPENING - 40
    assert [text for text in page.console_problems if "status of 422" not in text] == []
