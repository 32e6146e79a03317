"""The accounts lifecycle in a real browser: the users list, a new user, freeze and unfreeze,
and a transfer to a user picked with the as-you-type lookup (Chromium, real HTTP, PostgreSQL)."""
import re

from playwright.sync_api import expect

from wallet_web import accounts, ledger, queries
from wallet_web.extensions import db

from .conftest import screenshot
from .test_dashboard import fill_movement


def gold(user_id: int) -> int:
    db.session.rollback()  # read what the server committed
    return next(a.balance for a in queries.user_balances(user_id)
                if a.kind == "wallet" and a.asset_code == "GOLD")


def status_of(user_id: int) -> str:
    db.session.rollback()
    return queries.get_user(user_id).status


REFUSED_FORM = "the server responded with a status of 422"  # logged by Chromium, not an error


def problems(page) -> list[str]:
    """Console errors (CSP violations included), but the 422 of a form answered inline."""
    return [text for text in page.console_problems if REFUSED_FORM not in text]


def make_user(name: str, gold_balance: int = 0) -> int:
    user_id = accounts.create_user(name, f"{name}@example.test")
    if gold_balance:
        ledger.topup(user_id, "GOLD", gold_balance, f"browser:{name}")
    return user_id


def change_status(page, action: str, reason: str) -> None:
    form = page.locator(f"#form-{action}")
    form.get_by_label("Reason").fill(reason)
    form.get_by_label(re.compile("I confirm")).check()
    form.get_by_role("button", name=re.compile(f"^{action.title()} ")).click()


def test_the_users_list_filters_by_status(log_in):
    make_user("warm-1"), make_user("warm-2")
    accounts.change_status(make_user("cold-1"), "freeze", "Set up by the test")
    page = log_in("viewer")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.wait_for_url("**/users")
    rows = page.locator("#user-list tbody tr")
    expect(rows.first).to_contain_text("cold-1")  # newest first
    expect(rows.filter(has_text="warm-1").locator(".status")).to_have_text("active")
    page.get_by_label("Status").select_option("frozen")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/users?**status=frozen**")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cold-1")
    expect(rows.first.locator(".status")).to_have_text("frozen")
    screenshot(page, "users-frozen")
    assert page.console_problems == []


def test_an_operator_creates_a_user_after_fixing_an_inline_error(log_in):
    page = log_in("operator")
    page.goto("/users")
    page.get_by_role("link", name="New user").click()
    page.get_by_label("Username").fill("newton")
    page.get_by_label("Email").fill("newton-at-example.com")
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#email-error")).to_contain_text("@-sign")
    assert queries.find_users("newton") == []
    page.get_by_label("Email").fill("newton@example.com")
    page.get_by_label("External id (optional)").fill("crm-7")
    page.get_by_role("button", name="Create user").click()
    page.wait_for_url(re.compile(r".*/users/\d+$"))
    expect(page.locator("#flash")).to_contain_text("User newton created with one wallet per asset.")
    expect(page.get_by_role("heading", level=1)).to_have_text("newton active")
    expect(page.locator(".page-head")).to_contain_text("crm-7")
    assert problems(page) == []


def test_a_frozen_user_refuses_a_spend_until_unfrozen(log_in):
    user_id = make_user("frosty", 100)
    page = log_in("operator")
    page.goto(f"/users/{user_id}")
    badge = page.locator("h1 .status")
    expect(badge).to_have_text("active")
    change_status(page, "freeze", "Suspicious login")
    expect(badge).to_have_text("frozen")
    expect(page.locator("#flash")).to_contain_text("User frosty frozen")
    expect(page.locator("table.status-history tbody tr").first).to_contain_text("Suspicious login")
    spend = page.locator("#form-spend")
    fill_movement(spend, "10", "Shop")
    spend.get_by_role("button", name="Spend").click()
    expect(page.locator("#form-spend .form-error")).to_contain_text("wallet is frozen")
    assert gold(user_id) == 100 and status_of(user_id) == "frozen"
    screenshot(page, "user-frozen")
    change_status(page, "unfreeze", "Cleared by support")
    expect(badge).to_have_text("active")
    spend = page.locator("#form-spend")
    fill_movement(spend, "10", "Shop")
    spend.get_by_role("button", name="Spend").click()
    expect(page.locator("#form-spend .success")).to_contain_text("New GOLD balance: 90.")
    expect(page.locator("table.status-history tbody tr")).to_have_count(2)
    assert gold(user_id) == 90
    assert problems(page) == []


def test_a_transfer_to_a_user_picked_with_the_lookup(log_in):
    sender, recipient = make_user("payer", 100), make_user("payee")
    page = log_in("operator")
    page.goto(f"/users/{sender}")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    form = page.locator("#form-transfer")
    form.get_by_label("To user").fill("pay")
    results = form.locator("#transfer-to-results")
    expect(results.get_by_role("button", name="Choose payee")).to_be_visible()
    expect(results.get_by_role("button", name="Choose payer")).to_have_count(0)  # the sender
    results.get_by_role("button", name="Choose payee").click()
    expect(form.locator(".recipient .chosen")).to_contain_text("payee")
    fill_movement(form, "40", "Prize share", code="promotion")
    form.get_by_role("button", name="Transfer").click()
    expect(page.locator("#form-transfer .success")).to_contain_text(
        "Transfer of 40 GOLD to payee recorded")
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text("60")
    expect(page.locator("#history tbody tr").first).to_contain_text("Prize share")
    assert page.evaluate("window.loadedOnce") is True
    assert (gold(sender), gold(recipient)) == (60, 40)
    screenshot(page, "user-transfer")
    assert page.console_problems == []
