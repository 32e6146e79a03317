"""Confirmations in a real browser: one at a time on the user page (the latest movement's), and a
reversal that says what it reversed with a link to the new transaction. Each test ends with no
console error."""
from playwright.sync_api import expect

from tests.web.conftest import OPENING, gold_of
from wallet_web import holds, queries

from .test_dashboard import fill_movement, open_customer


def move(page, kind: str, amount: str, reason: str) -> None:
    """Fill and send the user page's form of that kind (top-up, spend, ...)."""
    form = page.locator(f"#form-{kind}")
    fill_movement(form, amount, reason)
    form.get_by_role("button").click()


def test_a_spend_after_a_top_up_leaves_one_confirmation_the_spends(log_in, customer):
    page = log_in("operator")
    open_customer(page, customer)
    move(page, "topup", "50", "Goodwill gesture")
    expect(page.get_by_role("status")).to_contain_text(f"New GOLD balance: {OPENING + 50}.")
    move(page, "spend", "30", "Bought a sword")
    expect(page.locator("#form-spend").get_by_role("status")).to_contain_text(
        "Spend of 30 GOLD recorded as transaction #")
    expect(page.get_by_role("status")).to_have_count(1)
    expect(page.get_by_role("status")).to_contain_text(f"New GOLD balance: {OPENING + 20}.")
    assert gold_of(customer.id) == OPENING + 20
    assert page.console_problems == []


def test_a_release_after_a_top_up_leaves_one_confirmation_the_releases(log_in, customer):
    hold = holds.place(customer.id, "GOLD", 40, "shop-1", expires_in_seconds=600).hold
    page = log_in("operator")
    open_customer(page, customer)
    move(page, "topup", "5", "Goodwill gesture")
    expect(page.get_by_role("status")).to_contain_text("Top up of 5 GOLD recorded")
    article = page.locator(f"#hold-{hold.id}")
    article.get_by_label("Reason code").select_option("goodwill")
    article.get_by_label("Reason", exact=True).fill("Delivery failed")
    article.get_by_role("button", name=f"Release hold #{hold.id}").click()
    expect(article.get_by_role("status")).to_contain_text(f"Released hold #{hold.id}")
    expect(page.get_by_role("status")).to_have_count(1)
    assert page.console_problems == []


def test_a_reversal_confirms_in_place_with_a_link_to_the_new_transaction(log_in, customer):
    page = log_in("admin")
    page.goto(f"/ledger/{customer.opening_id}")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    reversal = page.locator("#reversal")
    reversal.get_by_label("Reason code").select_option("goodwill")
    reversal.get_by_label("Reason", exact=True).fill("Charged twice")
    reversal.get_by_label("I confirm").check()
    reversal.get_by_role("button", name=f"Reverse transaction #{customer.opening_id}").click()
    confirmation = reversal.get_by_role("status")
    expect(confirmation).to_contain_text(
        f"Transaction #{customer.opening_id} (Top up of {OPENING} GOLD) is reversed")
    expect(confirmation).to_be_focused()
    new_id = queries.reversal_of(customer.opening_id).id
    expect(page.locator("#facts").get_by_role("link", name=f"#{new_id}")).to_be_visible()
    assert page.evaluate("window.loadedOnce") is True
    confirmation.get_by_role("link", name=f"transaction #{new_id}").click()
    expect(page.get_by_role("heading", name=f"Transaction #{new_id}")).to_be_visible()
    assert gold_of(customer.id) == 0
    assert page.console_problems == []
