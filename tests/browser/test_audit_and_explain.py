"""The audit trail and "explain this balance" in a real browser: an admin's audit page lists
the steps of a movement they made, and the statement closes at the balance the user page shows
(also on paper, where the navigation and the forms are hidden)."""
from playwright.sync_api import expect

from tests.web.conftest import OPENING, gold_of
from wallet_web import ledger

from .conftest import screenshot


def test_an_admins_audit_page_lists_the_steps_of_their_movement(log_in, customer):
    page = log_in("admin", "ada")
    page.goto(customer.page)
    form = page.locator("#form-topup")
    form.get_by_label("Amount").fill("25")
    form.get_by_label("Reason code").select_option("goodwill")
    form.get_by_label("Reason", exact=True).fill("Audited goodwill")
    form.get_by_role("button", name="Top up").click()
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text(
        f"{OPENING + 25:,}")
    assert gold_of(customer.id) == OPENING + 25

    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Actor starts with").fill("operator:ada")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/audit?**actor=operator%3Aada**")
    actions = page.locator("#audit-rows tr[data-action]")
    expect(actions.first).to_have_attribute("data-action", "movement.posted")
    shown = [row.get_attribute("data-action") for row in actions.all()]
    assert shown[-1] == "login.succeeded"
    assert shown.index("movement.posted") < shown.index("movement.submitted") \
        < shown.index("login.succeeded")  # newest first
    submitted = page.locator('#audit-rows tr[data-action="movement.submitted"]')
    expect(submitted).to_contain_text("reason_code: goodwill")
    expect(submitted).to_contain_text("amount: 25")
    screenshot(page, "audit")
    assert page.console_problems == []


def test_the_statement_closes_at_the_balance_on_the_user_page(log_in, customer):
    ledger.spend(customer.id, "GOLD", 30, "browser-spend", description="A sword")
    ledger.topup(customer.id, "GOLD", 1_295, "browser-topup")
    page = log_in("viewer")
    page.goto(customer.page)
    on_user_page = page.locator('#balances tr[data-asset="GOLD"] .balance').inner_text()
    assert on_user_page.startswith(f"{OPENING - 30 + 1_295:,}")  # 1,365

    page.goto(f"{customer.page}/explain?asset=GOLD")
    closing = page.locator(".statement-summary .closing")
    expect(closing).to_have_text(on_user_page)
    expect(page.locator('[data-check="adds-up"]')).to_contain_text("✓")
    expect(page.locator('[data-check="balance-now"]')).to_contain_text("✓")
    expect(page.locator("table.statement tr[data-posting]")).to_have_count(3)
    screenshot(page, "explain-balance")

    page.emulate_media(media="print")
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.locator("#explain form")).to_be_hidden()
    expect(closing).to_be_visible()
    assert page.console_problems == []
