"""Issue 15, reading and layout in a real browser: times in the reader's own time zone (UTC in
the title, and UTC without JavaScript), the history of all assets, no sideways scrolling of the
page at 390 px with the amounts in view, long references on one line that still copy whole, and
date filters wide enough to show their value."""
from datetime import timedelta, timezone

import pytest
from playwright.sync_api import expect

from wallet_web import ledger, queries

from .conftest import HANG_GUARD_MS, screenshot, sign_in
from .test_dashboard import top_up

PHONE = {"width": 390, "height": 844}
KOLKATA = timezone(timedelta(hours=5, minutes=30), "GMT+5:30")  # no daylight saving time
LONG_REFERENCE = "partner-shop:order:" + "7f3a9c" * 8


@pytest.fixture
def tab_in_zone(chromium, live_server):
    """tab_in_zone(time_zone, javascript=True) -> a page of a browser set to that time zone."""
    contexts = []

    def open_tab(time_zone: str, javascript: bool = True):
        contexts.append(chromium.new_context(base_url=live_server, timezone_id=time_zone,
                                             java_script_enabled=javascript,
                                             viewport={"width": 1280, "height": 900}))
        contexts[-1].set_default_timeout(HANG_GUARD_MS)
        return contexts[-1].new_page()

    yield open_tab
    for context in contexts:
        context.close()


def utc_text(moment) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def page_overflows(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > "
                         "document.documentElement.clientWidth")


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    return box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]


# ---------------------------------------------------------------- local time


def test_times_show_in_the_reader_s_time_zone_with_utc_on_hover(tab_in_zone, customer):
    page = sign_in(tab_in_zone("Asia/Kolkata"), "viewer")
    page.goto(customer.page)
    opening = queries.get_transaction(customer.opening_id).created_at
    first = page.locator("#history tbody tr").first.locator("time")
    expect(first).to_have_text(opening.astimezone(KOLKATA).strftime("%Y-%m-%d %H:%M:%S GMT+5:30"))
    expect(first).to_have_attribute("title", utc_text(opening))
    page.get_by_role("link", name="All assets").click()  # rows htmx swaps in are rewritten too
    expect(page.locator("#history nav a[aria-current]")).to_have_text("All assets")
    expect(page.locator("#history tbody tr").first.locator("time")).to_contain_text("GMT+5:30")
    expect(page.locator("time:not([data-local])")).to_have_count(0)


def test_a_top_up_s_new_history_row_shows_local_time_too(tab_in_zone, customer):
    page = sign_in(tab_in_zone("Asia/Kolkata"), "operator")
    page.goto(customer.page)
    top_up(page, "7")
    page.locator("#form-topup").get_by_role("button", name="Top up").click()
    expect(page.locator("#form-topup .success")).to_contain_text("New GOLD balance")
    newest = page.locator("#history tbody tr").first  # swapped in out of band
    expect(newest).to_contain_text("+7")
    expect(newest.locator("time")).to_contain_text("GMT+5:30")
    expect(page.locator("time:not([data-local])")).to_have_count(0)


def test_without_javascript_times_stay_in_utc(tab_in_zone, customer):
    page = sign_in(tab_in_zone("Asia/Kolkata", javascript=False), "viewer")
    page.goto(customer.page)
    opening = queries.get_transaction(customer.opening_id).created_at
    expect(page.locator("#history tbody tr").first.locator("time")).to_have_text(utc_text(opening))


# ---------------------------------------------------------------- all assets


def test_an_agent_switches_the_history_to_all_assets(log_in, customer):
    diamonds = ledger.topup(customer.id, "DIAMOND", 3, "gems-for-carla")
    page = log_in("viewer")
    page.goto(customer.page)
    expect(page.locator("#history tbody tr")).to_have_count(1)  # GOLD only
    page.get_by_role("link", name="All assets").click()
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(f"#{diamonds.id}")
    expect(rows.first).to_contain_text("+3 DIAMOND")
    expect(rows.nth(1)).to_contain_text("+100 GOLD")
    assert page.console_problems == []


# ---------------------------------------------------------------- 390 px


@pytest.mark.parametrize("where", ["user", "ledger"])
def test_at_390_px_the_page_never_scrolls_sideways_and_the_amount_is_in_view(log_in, customer,
                                                                            where):
    ledger.topup(customer.id, "GOLD", 5, LONG_REFERENCE, description="A long description of it")
    page = log_in("admin")  # the most links in the header
    page.set_viewport_size(PHONE)
    page.goto(customer.page if where == "user" else "/ledger")
    table = page.locator("#history table" if where == "user" else "table.transactions")
    amount = table.locator("tbody tr").first.locator("td.num").first
    expect(amount).to_contain_text("+5")
    assert table.evaluate("table => table.parentElement.scrollWidth > "
                          "table.parentElement.clientWidth")  # the table scrolls in its wrap
    assert not page_overflows(page)
    assert in_view(page, amount)
    screenshot(page, f"{where}-390px")
    assert page.console_problems == []


# ---------------------------------------------------------------- the ledger table


def test_a_long_reference_stays_on_one_line_and_copies_whole(log_in, customer):
    ledger.topup(customer.id, "GOLD", 5, LONG_REFERENCE, description="Refund of order")
    page = log_in("viewer")
    page.goto("/ledger")
    row = page.locator("table.transactions tbody tr").first
    reference = row.locator(".reference .clip")
    expect(reference).to_have_attribute("title", LONG_REFERENCE)
    line = reference.evaluate("span => parseFloat(getComputedStyle(span).lineHeight)")
    assert reference.bounding_box()["height"] < 1.5 * line  # one line, never broken mid-word
    assert reference.evaluate("span => span.scrollWidth > span.clientWidth")  # clipped: "…"
    description = row.locator("td.description").evaluate("""cell => {
        const range = document.createRange(); range.selectNodeContents(cell);
        return range.getBoundingClientRect().height; }""")
    assert description < 1.5 * line  # squeezed, it would fold onto three: Refund / of / order
    selected = reference.evaluate("""span => { const range = document.createRange();
        range.selectNodeContents(span);
        getSelection().removeAllRanges(); getSelection().addRange(range);
        return getSelection().toString(); }""")
    assert selected == LONG_REFERENCE
    assert page.console_problems == []


@pytest.mark.parametrize("width", [1280, 390])
def test_the_date_filters_are_wide_enough_for_their_value(log_in, width):
    page = log_in("viewer")
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/ledger")
    for field in page.locator(".filters input[type=datetime-local]").all():
        shown = field.evaluate("input => input.getBoundingClientRect().width")
        needed = field.evaluate("""input => { input.style.width = "auto";
            const width = input.getBoundingClientRect().width;
            input.style.width = ""; return width; }""")
        assert shown >= needed
    assert not page_overflows(page)
    assert page.console_problems == []
