"""The overview page and the read queries it adds (on both backends: bin/run uses SQLite)."""
from datetime import date, datetime, timedelta, timezone

import pytest

from wallet_web import ledger, queries
from wallet_web.web.charts import daily_bars, sparkline

from .conftest import count_transactions

TODAY = datetime.now(timezone.utc).date()


@pytest.mark.both_backends
def test_wallet_totals_are_what_users_hold(app, make_user):
    make_user(balance=7, asset="DIAMOND")
    assert queries.wallet_totals() == {"GOLD": 150, "DIAMOND": 7, "LOYALTY": 0}


@pytest.mark.both_backends
def test_volume_by_kind_counts_each_transaction_once(app, make_user):
    user_id = make_user(balance=1000)
    ledger.spend(user_id, "GOLD", 300, "spend-1")
    rows = {(row.kind, row.asset_code): row for row in queries.volume_by_kind(TODAY)}
    assert (rows["topup", "GOLD"].count, rows["topup", "GOLD"].amount) == (3, 1150)
    assert (rows["spend", "GOLD"].count, rows["spend", "GOLD"].amount) == (1, 300)
    assert queries.volume_by_kind(TODAY + timedelta(days=1)) == []


@pytest.mark.both_backends
def test_daily_volume_groups_by_utc_day_and_kind(app, make_user):
    make_user(balance=40)
    rows = queries.daily_volume(TODAY - timedelta(days=29), ("topup",))
    assert [(r.day, r.asset_code, r.amount) for r in rows] == [(TODAY, "GOLD", 190)]
    assert queries.daily_volume(TODAY, ("bonus",)) == []


@pytest.mark.both_backends
def test_balance_series_is_the_balance_after_each_posting(app, make_user, wallet_of):
    user_id = make_user(balance=10)
    ledger.topup(user_id, "GOLD", 5, "series-1")
    ledger.spend(user_id, "GOLD", 3, "series-2")
    assert [b for _, b in queries.balance_series(wallet_of(user_id))] == [10, 15, 12]
    assert [b for _, b in queries.balance_series(wallet_of(user_id), points=2)] == [15, 12]


@pytest.mark.both_backends
def test_usernames_of_many_users_in_one_query(app, make_user):
    ann, ben = make_user(name="ann"), make_user(name="ben")
    assert queries.usernames({ann, ben, 10**9}) == {ann: "ann", ben: "ben"}
    assert queries.usernames(set()) == {}


def test_chart_geometry():
    today = date(2026, 1, 30)
    chart = daily_bars({today: 100, today - timedelta(days=1): 50}, today, days=30, height=100)
    assert len(chart.bars) == 30 and chart.peak == 100
    assert (chart.bars[-1].height, chart.bars[-2].height, chart.bars[0].height) == (100, 50, 0)
    assert daily_bars({}, today).peak == 0
    assert sparkline([]) is None and sparkline([0, 10], 100, 20).points == "0.0,18.0 100.0,2.0"
    assert sparkline([5], 100, 20).dot == (50.0, 2.0)  # one posting: a dot, not a line


def test_the_overview_shows_holdings_volume_chart_and_latest(login, customer):
    page = login("viewer").get("/").text
    held = queries.wallet_totals()["GOLD"]
    assert "Users' wallets" in page and f"{held:,}" in page
    assert "1,000,000,000,000" in page  # equity: what genesis issued, with separators
    assert "<svg" in page and "<rect" in page
    assert page.count('<td><a href="/ledger/') == min(10, count_transactions())
    assert f'<a href="/ledger/{customer.opening_id}">' in page  # the latest transaction
    assert f'<a href="{customer.page}">carla</a>' in page


def test_dashboard_pages_send_a_strict_csp_and_have_no_inline_script_or_style(login, customer):
    admin = login("admin")
    for path in ("/", "/users?q=a", customer.page, "/ledger", f"/ledger/{customer.opening_id}",
                 "/admin/operators", "/admin/api-keys"):
        response = admin.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        html = response.text
        assert "<script>" not in html and " style=" not in html and "<style" not in html
        assert " onclick=" not in html and "javascript:" not in html
        assert '/static/vendor/htmx.min.js' in html


def test_the_login_page_sends_the_csp_too(anonymous):
    response = anonymous.get("/login")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_api_keeps_its_own_headers(app):
    response = app.test_client().get("/api/v1/openapi.json")
    assert "Content-Security-Policy" not in response.headers


def test_the_overview_shows_what_is_on_hold_per_asset(login, customer):
    from wallet_web import holds
    holds.place(customer.id, "GOLD", 37, "overview-hold")

    page = login("viewer").get("/").text

    assert "On hold" in page
    row = page[page.index('<th scope="row">GOLD</th>'):]
    cells = row[:row.index("</tr>")]
    assert '<span class="money">37&nbsp;' in cells
