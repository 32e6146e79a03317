"""The dashboard in a real browser: Chromium, real HTTP, PostgreSQL. Each test makes the records
it needs (the `customer` holds OPENING GOLD) and, but where a 4xx is the point, ends with no
console error."""
import csv
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.web.conftest import OPENING, gold_of
from wallet_web import exports, operators
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import PASSWORD, screenshot


def stored(kind: str | None = None) -> int:
    """How many transactions (of one kind) the database holds."""
    db.session.rollback()
    query = select(func.count()).select_from(Transaction)
    return db.session.scalar(query.filter_by(kind=kind) if kind else query)


def open_customer(page, customer) -> None:
    page.get_by_label("Find a user or a reference").fill(customer.name[:3])
    page.locator("#lookup-results").get_by_role("option", name=customer.name).click()
    page.wait_for_url(f"**{customer.page}")


def fill_movement(form, amount: str, reason: str, code: str = "goodwill", ticket: str = "") -> None:
    """A movement form's fields: the amount, the reason code, the reason in words, a ticket."""
    form.get_by_label("Amount").fill(amount)
    form.get_by_label("Reason code").select_option(code)
    form.get_by_label("Reason", exact=True).fill(reason)
    form.get_by_label("Ticket").fill(ticket)


def top_up(page, amount: str, reason: str = "Goodwill gesture", **controls) -> None:
    fill_movement(page.locator("#form-topup"), amount, reason, **controls)


# ---------------------------------------------------------------- overview and movements


def test_the_first_tab_on_the_overview_focuses_the_skip_link(log_in):
    page = log_in("viewer")
    screenshot(page, "overview")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    assert page.console_problems == []


def test_an_operator_tops_up_a_user_and_sees_it_without_a_reload(log_in, customer):
    page = log_in("operator")
    open_customer(page, customer)
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    top_up(page, "1,250")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    balance = f"{OPENING + 1250:,}"
    expect(page.locator("#form-topup .success")).to_contain_text(f"New GOLD balance: {balance}.")
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text(balance)
    first_row = page.locator("#history tbody tr").first
    expect(first_row).to_contain_text("Goodwill gesture")
    expect(first_row).to_contain_text("+1,250")
    assert page.evaluate("window.loadedOnce") is True
    assert gold_of(customer.id) == OPENING + 1250
    screenshot(page, "user")
    assert page.console_problems == []


def test_an_invalid_amount_shows_an_inline_error(log_in, customer):
    page = log_in("operator")
    open_customer(page, customer)
    before = stored()
    top_up(page, "12.5")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    expect(page.locator("#topup-amount-error")).to_contain_text("Enter a whole number")
    expect(page.locator("#topup-amount")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "user-invalid-amount")
    assert stored() == before and gold_of(customer.id) == OPENING


def test_a_double_click_posts_one_transaction(log_in, customer):
    page = log_in("operator")
    open_customer(page, customer)
    before = stored()
    top_up(page, "10", "Double click")
    page.locator("#form-topup").get_by_role("button", name="Top up").dblclick()
    expect(page.locator("#form-topup .success")).to_contain_text(
        f"New GOLD balance: {OPENING + 10:,}.")
    # A second submit of the new form is a new movement: the old form cannot be resent.
    assert stored() == before + 1 and gold_of(customer.id) == OPENING + 10
    assert page.console_problems == []


# ---------------------------------------------------------------- ledger


def test_the_ledger_filter_shows_only_that_kind(log_in, customer):
    page = log_in("viewer")
    page.get_by_role("link", name="Ledger").click()
    page.get_by_label("Kind").select_option("topup")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ledger?kind=topup**")
    kinds = page.locator("#ledger-results .kind")
    expect(kinds).to_have_count(stored("topup"))
    assert set(kinds.all_inner_texts()) == {"topup"}
    screenshot(page, "ledger")
    assert page.console_problems == []


def test_the_ledger_csv_holds_the_filtered_transactions(log_in, customer, tmp_path):
    page = log_in("viewer")
    page.goto("/ledger?kind=topup")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == exports.HEADER
    assert {row[2] for row in rows[1:]} == {"topup"}
    assert len(rows) == 1 + 2 * stored("topup")  # the header, then two legs each
    assert page.console_problems == []


def test_a_ledger_row_opens_its_transaction(log_in, customer):
    page = log_in("viewer")
    page.goto("/ledger")
    page.locator("#ledger-results").get_by_role("link", name=f"#{customer.opening_id}").click()
    heading = page.get_by_role("heading", name=f"Transaction #{customer.opening_id}")
    expect(heading).to_be_visible()
    expect(page.get_by_text("opening:carla")).to_be_visible()
    screenshot(page, "transaction")
    assert page.console_problems == []


# ---------------------------------------------------------------- roles


def test_a_viewer_sees_no_movement_form_and_a_forged_post_is_refused(log_in, customer):
    page = log_in("viewer")
    page.goto(customer.page)
    expect(page.locator("#form-topup")).to_have_count(0)
    status = page.evaluate("""async (path) => {
        const headers = JSON.parse(document.body.getAttribute("hx-headers"));
        const body = new URLSearchParams({"topup-asset": "GOLD", "topup-amount": "5",
            "topup-reason": "try", "topup-reason_code": "goodwill",
            "topup-reference_id": "web-viewer"});
        const response = await fetch(path, {method: "POST", headers, body});
        return response.status;
    }""", f"{customer.page}/topup")
    assert status == 403
    assert gold_of(customer.id) == OPENING


def test_a_viewer_is_refused_the_admin_pages(log_in):
    page = log_in("viewer")
    response = page.goto("/admin/operators")
    assert response.status == 403
    expect(page.get_by_role("heading", name="403 · Not allowed")).to_be_visible()


# ---------------------------------------------------------------- admin


def test_an_admin_creates_an_operator(log_in):
    page = log_in("admin")
    page.goto("/admin/operators")
    page.get_by_label("Username").fill("eve")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create operator").click()
    expect(page.locator("#flash")).to_contain_text("Operator eve (viewer) created.")
    db.session.rollback()
    assert operators.find_operator("eve").role == "viewer"
    assert page.console_problems == []


def test_an_admin_disables_an_operator(log_in):
    page = log_in("admin")
    dana = operators.create_operator("dana", PASSWORD, "operator")
    page.goto("/admin/operators")
    page.get_by_role("button", name="Disable dana").click()
    expect(page.get_by_role("button", name="Enable dana")).to_be_visible()
    db.session.rollback()
    assert operators.get_operator(dana.id).is_active is False
    screenshot(page, "admin-operators")
    assert page.console_problems == []


def test_a_new_api_key_is_shown_once(log_in):
    page = log_in("admin")
    page.goto("/admin/api-keys")
    page.get_by_label("Name").fill("game-server")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_have_text(re.compile(r"^wk_\S{43}$"))
    page.goto("/admin/api-keys")  # the list only: the key itself is never shown again
    expect(page.locator("#new-key")).to_have_count(0)
    expect(page.get_by_role("cell", name="game-server", exact=True)).to_be_visible()
    screenshot(page, "admin-api-keys")
    assert page.console_problems == []


# ---------------------------------------------------------------- layout and no JavaScript


def test_the_user_page_fits_a_narrow_screen(log_in, customer):
    page = log_in("operator")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(customer.page)
    expect(page.locator("#form-topup")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "user-narrow")
    assert page.console_problems == []


@pytest.mark.parametrize("page", [False], ids=["no-js"], indirect=True)
def test_a_top_up_works_without_javascript(log_in, customer):
    page = log_in("operator")
    page.goto(f"/users?q={customer.name}")
    page.get_by_role("link", name=customer.name).click()
    top_up(page, "5", "No script")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    page.wait_for_url(f"**{customer.page}?asset=GOLD")
    expect(page.locator("#flash")).to_contain_text("Top up of 5 GOLD recorded")
    expect(page.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text(
        f"{OPENING + 5:,}")
    assert gold_of(customer.id) == OPENING + 5


@pytest.mark.parametrize("page", [False], ids=["no-js"], indirect=True)
def test_the_ledger_filter_works_without_javascript(log_in):
    page = log_in("viewer")
    page.goto("/ledger")
    page.get_by_label("Kind").select_option("spend")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ledger?kind=spend**")
    expect(page.locator("#ledger-results")).to_contain_text("No transactions match.")
