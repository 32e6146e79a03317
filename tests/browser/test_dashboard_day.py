"""Issue 15, the dashboard day, in a real browser: an htmx submit under the strict CSP raises no
violation (htmx injects no indicator style; dashboard.css carries the rules), the users list's
indicator shows only while it loads, and the API docs and the dashboard fetch their icon
without a 404."""
import logging
import time

import pytest
from playwright.sync_api import expect

from wallet_web import queries

from .conftest import HANG_GUARD_MS
from .test_dashboard import open_customer, top_up

# Kept from the first script of every document: the CSP's refusals, whatever the console says.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) =>
  window.cspViolations.push(`${event.violatedDirective}: ${event.blockedURI || "inline"}`));
"""
ICONS = ("/static/favicon.svg", "/favicon.ico")


@pytest.fixture
def served():
    """(path, status) of every request the live server answered, read from its access log."""
    answered = []

    class Collect(logging.Handler):
        def emit(self, record):
            answered.append((record.fields["path"], record.fields["status"]))

    handler, access = Collect(), logging.getLogger("wallet_web.access")
    access.addHandler(handler)
    yield answered
    access.removeHandler(handler)


def wait_until(condition, page) -> None:
    deadline = time.monotonic() + HANG_GUARD_MS / 1000
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        page.wait_for_timeout(50)


def test_an_htmx_top_up_raises_no_content_security_policy_violation(log_in, customer):
    page = log_in("operator")
    page.add_init_script(RECORD_VIOLATIONS)
    open_customer(page, customer)
    top_up(page, "40")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    expect(page.locator("#form-topup .success")).to_contain_text("New GOLD balance")
    assert page.evaluate("window.cspViolations") == []
    assert page.locator("head style").count() == 0  # htmx added no inline indicator style
    assert page.console_problems == []


def test_load_more_on_the_users_list_shows_its_indicator_only_while_it_loads(log_in, make_user):
    for number in range(30):
        make_user(name=f"listed-{number:02}")
    page = log_in("viewer")
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto("/users")
    rows = page.locator("#user-list tbody tr[data-user]")
    more = page.get_by_role("link", name="Load more")
    indicator = more.locator(".htmx-indicator")
    expect(rows).to_have_count(25)
    expect(indicator).to_be_hidden()
    page.evaluate("""() => document.body.addEventListener("htmx:beforeSend", (event) => {
        const shown = event.detail.elt.querySelector(".htmx-indicator");
        window.indicatorWhileLoading = shown && getComputedStyle(shown).visibility; })""")
    more.click()
    expect(rows).to_have_count(len(queries.list_users(limit=100).items))
    expect(more).to_have_count(0)
    assert page.evaluate("window.indicatorWhileLoading") == "visible"
    assert page.evaluate("window.cspViolations") == []
    assert page.console_problems == []


@pytest.mark.parametrize("path", ["/api/docs", "/login"])
def test_a_page_fetches_its_icon_and_nothing_it_asks_for_is_missing(open_tab, served, path):
    page = open_tab()  # a browser of its own: nothing cached
    page.goto(path)
    wait_until(lambda: any(answered in ICONS for answered, _ in served), page)
    assert [(answered, status) for answered, status in served if answered in ICONS] == [
        ("/static/favicon.svg", 200)]
    assert [(answered, status) for answered, status in served if status == 404] == []
    assert page.console_problems == []


def test_signed_in_pages_ask_for_nothing_missing(log_in, served):
    page = log_in("viewer")
    for path in ("/users", "/ledger"):
        page.goto(path)
    assert [(answered, status) for answered, status in served if status == 404] == []
    assert page.console_problems == []
