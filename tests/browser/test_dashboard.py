"""The dashboard in a real browser: Chromium, real HTTP, PostgreSQL."""
import csv
import re

import pytest
from playwright.sync_api import expect

from wallet_web import exports, operators, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import screenshot


def alice_gold() -> int:
    db.session.rollback()
    return next(a.balance for a in queries.user_balances(2)
                if a.kind == "wallet" and a.asset_code == "GOLD")


def transactions() -> int:
    db.session.rollback()
    return db.session.query(Transaction).count()


def open_alice(page) -> None:
    page.get_by_label("Find a user or a reference").fill("ali")
    page.locator("#lookup-results").get_by_role("link", name="alice").click()
    page.wait_for_url("**/users/2")


def top_up(page, amount: str, reason: str = "Goodwill gesture") -> None:
    form = page.locator("#form-topup")
    form.get_by_label("Amount").fill(amount)
    form.get_by_label("Reason").fill(reason)


def test_an_operator_tops_up_alice_and_sees_it_without_a_reload(log_in):
    page = log_in("operator")
    screenshot(page, "overview")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    open_alice(page)
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    top_up(page, "1,250")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    expect(page.locator("#form-topup .success")).to_contain_text("New GOLD balance: 1,350.")
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text("1,350")
    first_row = page.locator("#history tbody tr").first
    expect(first_row).to_contain_text("Goodwill gesture")
    expect(first_row).to_contain_text("+1,250")
    assert page.evaluate("window.loadedOnce") is True
    assert alice_gold() == 1350
    screenshot(page, "user")
    assert page.console_problems == []


def test_an_invalid_amount_shows_an_inline_error(log_in):
    page = log_in("operator")
    open_alice(page)
    before = transactions()
    top_up(page, "12.5")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    error = page.locator("#topup-amount-error")
    expect(error).to_contain_text("Enter a whole number")
    expect(page.locator("#topup-amount")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "user-invalid-amount")
    assert transactions() == before and alice_gold() == 100


def test_a_double_click_posts_one_transaction(log_in):
    page = log_in("operator")
    open_alice(page)
    before = transactions()
    top_up(page, "10", "Double click")
    page.locator("#form-topup").get_by_role("button", name="Top up").dblclick()
    expect(page.locator("#form-topup .success")).to_contain_text("New GOLD balance: 110.")
    # A second submit of the new form is a new movement: the old form cannot be resent.
    assert transactions() == before + 1 and alice_gold() == 110


def test_the_ledger_filter_and_its_csv(log_in, tmp_path):
    page = log_in("viewer")
    page.get_by_role("link", name="Ledger").click()
    page.get_by_label("Kind").select_option("topup")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ledger?kind=topup**")
    kinds = page.locator("#ledger-results .kind")
    expect(kinds).to_have_count(2)
    assert set(kinds.all_inner_texts()) == {"topup"}
    screenshot(page, "ledger")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == exports.HEADER
    assert {row[2] for row in rows[1:]} == {"topup"} and len(rows) == 5  # two legs each
    page.locator("#ledger-results").get_by_role("link", name="#4").click()
    expect(page.get_by_role("heading", name="Transaction #4")).to_be_visible()
    assert page.console_problems == []


def test_a_viewer_is_refused(log_in):
    page = log_in("viewer")
    page.goto("/users/2")
    expect(page.locator("#form-topup")).to_have_count(0)
    status = page.evaluate("""async () => {
        const headers = JSON.parse(document.body.getAttribute("hx-headers"));
        const body = new URLSearchParams({"topup-asset": "GOLD", "topup-amount": "5",
            "topup-reason": "try", "topup-reference_id": "web-viewer"});
        const response = await fetch("/users/2/topup", {method: "POST", headers, body});
        return response.status;
    }""")
    assert status == 403
    response = page.goto("/admin/operators")
    assert response.status == 403
    expect(page.get_by_role("heading", name="403 · Not allowed")).to_be_visible()
    assert alice_gold() == 100


def test_admin_pages_and_a_narrow_screen(log_in):
    page = log_in("admin")
    operators.create_operator("dana", "correct horse battery", "operator")
    page.goto("/admin/operators")
    page.get_by_label("Username").fill("eve")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create operator").click()
    expect(page.locator("#flash")).to_contain_text("Operator eve (viewer) created.")
    page.get_by_role("button", name="Disable dana").click()
    expect(page.get_by_role("button", name="Enable dana")).to_be_visible()
    screenshot(page, "admin-operators")
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("game-server")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^wk_\S{43}$"))
    page.goto("/admin/api-keys")  # the list only: the key itself is never shown again
    expect(page.locator("#new-key")).to_have_count(0)
    screenshot(page, "admin-api-keys")
    page.goto("/ledger/4")
    screenshot(page, "transaction")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/users/2")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "user-narrow")
    page.goto("/login")
    assert page.console_problems == []


@pytest.mark.parametrize("page", [False], ids=["no-js"], indirect=True)
def test_the_forms_work_without_javascript(log_in):
    page = log_in("operator")
    page.goto("/users?q=alice")
    page.get_by_role("link", name="alice").click()
    top_up(page, "5", "No script")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    page.wait_for_url("**/users/2?asset=GOLD")
    expect(page.locator("#flash")).to_contain_text("Top up of 5 GOLD recorded")
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text("105")
    page.goto("/ledger")
    page.get_by_label("Kind").select_option("spend")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ledger?kind=spend**")
    expect(page.locator("#ledger-results")).to_contain_text("No transactions match.")
