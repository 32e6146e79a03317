"""Finding things in a real browser (Chromium, real HTTP, PostgreSQL): the header lookup as a
combobox driven by the keyboard (arrow keys, Enter, Escape), a transaction found by a word of
its reason, and the ledger jumped to a date with the count of what matches."""
from datetime import datetime, timezone

import pytest
from playwright.sync_api import expect

from wallet_web import ledger

from .conftest import screenshot


@pytest.fixture
def lookup(log_in):
    """The lookup box of a viewer's page."""
    page = log_in("viewer")
    return page, page.get_by_role("combobox", name="Find a user or a reference")


def active_option(page) -> str:
    """The text of the option the box names as active (aria-activedescendant)."""
    return page.evaluate("id => document.getElementById(id).textContent",
                         page.locator("#lookup-q").get_attribute("aria-activedescendant"))


def test_arrow_keys_move_through_the_results_and_enter_opens_the_active_one(lookup, make_user):
    page, box = lookup
    first, second = make_user(name="keyboard-amy"), make_user(name="keyboard-ann")
    box.press_sequentially("keyboard-a")
    options = page.get_by_role("listbox", name="Lookup results").get_by_role("option")
    expect(options).to_have_count(2)
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(box).not_to_have_attribute("aria-activedescendant", "lookup-option-0")
    box.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", "lookup-option-0")
    expect(options.nth(0)).to_have_attribute("aria-selected", "true")
    box.press("ArrowDown")
    assert active_option(page) == "keyboard-ann"
    box.press("ArrowDown")  # past the last: back to the first
    assert active_option(page) == "keyboard-amy"
    box.press("ArrowUp")
    assert active_option(page) == "keyboard-ann"
    expect(box).to_be_focused()  # focus stays in the box; the active option is announced
    screenshot(page, "lookup-keyboard")
    box.press("Enter")
    page.wait_for_url(f"**/users/{second}")
    assert first != second and page.console_problems == []


def test_escape_closes_the_results_then_clears_the_box(lookup, customer):
    page, box = lookup
    box.press_sequentially(customer.name[:3])
    results = page.locator("#lookup-results")
    expect(results.get_by_role("option", name=customer.name)).to_be_visible()
    box.press("ArrowDown")
    box.press("Escape")
    expect(results).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).not_to_have_attribute("aria-activedescendant", "lookup-option-0")
    expect(box).to_have_value(customer.name[:3])
    box.press("ArrowDown")  # opens the list again
    expect(results.get_by_role("option", name=customer.name)).to_be_visible()
    box.press("Escape")
    box.press("Escape")
    expect(box).to_have_value("")
    expect(results).to_be_hidden()
    assert page.console_problems == []


def test_a_word_of_a_reason_finds_the_transaction_and_enter_opens_it(lookup, customer):
    page, box = lookup
    bonus = ledger.bonus(customer.id, "GOLD", 7, "b-reason", description="Compensation outage")
    box.press_sequentially("compens")
    option = page.get_by_role("option", name=f"Transaction #{bonus.id}")
    expect(option).to_be_visible()
    box.press("ArrowDown")
    box.press("Enter")
    page.wait_for_url(f"**/ledger/{bonus.id}")
    assert page.console_problems == []


def test_nothing_found_is_said_and_no_list_is_offered(lookup):
    page, box = lookup
    box.press_sequentially("zzz-nobody")
    expect(page.locator("#lookup-results")).to_contain_text("Nothing matches")
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("listbox")).to_have_count(0)
    assert page.console_problems == []


def test_the_ledger_jumps_to_a_date_and_says_how_many_match(log_in, make_user, monkeypatch):
    user_id = make_user(name="dora")
    stamps = {}
    for day in (3, 4, 5):
        moment = datetime(2026, 11, day, 9, tzinfo=timezone.utc)
        monkeypatch.setattr(ledger, "utcnow", lambda moment=moment: moment)
        stamps[day] = ledger.topup(user_id, "GOLD", day, f"dora-{day}").id
    page = log_in("viewer")
    page.goto(f"/ledger?user_id={user_id}")
    expect(page.locator("#ledger-count")).to_have_text("3 transactions match.")
    page.get_by_label("Jump to date (UTC)").fill("2026-11-04")
    page.get_by_role("button", name="Go").click()
    page.wait_for_url("**start=2026-11-04**")
    rows = page.locator("#ledger-rows tr td:first-child a")
    expect(rows).to_have_text([f"#{stamps[4]}", f"#{stamps[3]}"])
    expect(page.get_by_role("link", name="Back to the newest")).to_be_visible()
    screenshot(page, "ledger-jump")
    assert page.console_problems == []


def test_the_search_and_jump_fit_a_390_px_screen(log_in):
    page = log_in("viewer")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/ledger?q=nothing-matches-this")
    expect(page.locator("#ledger-count")).to_have_text("0 transactions match.")
    expect(page.get_by_label("Jump to date (UTC)")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("combobox", name="Find a user or a reference").press_sequentially("viewer")
    expect(page.locator("#lookup-results")).to_contain_text("Nothing matches")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "ledger-search-narrow")
    assert page.console_problems == []
