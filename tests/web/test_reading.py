"""Issue 15, reading the dashboard: the user's history of every asset at once, a sparkline that
keeps a small move small and labels its scale, every time written by one macro (UTC, which the
browser rewrites into the reader's zone), and long references kept on one line in the ledger."""
import html
import re
from pathlib import Path

from wallet_web import ROOT_DIR, ledger
from wallet_web.web.charts import sparkline

from .test_amounts_and_confirmations import EUR, euro  # noqa: F401  (a fixture: EUR, 2 decimals)

MINUS = "\u2212"
TIME = re.compile(r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)" '
                  r'title="([^"]+ UTC)">([^<]+)</time>')


def section(page: str, section_id: str) -> str:
    return re.search(rf'<section class="card" id="{section_id}".*?</section>', page, re.S).group(0)


def history_rows(page: str) -> list[list[str]]:
    """The history's rows, each as the text of its cells."""
    body = re.search(r"<tbody>(.*?)</tbody>", section(page, "history"), re.S).group(1)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).replace("\xa0", " ").strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def balances_row(page: str, asset: str = "GOLD") -> str:
    return re.search(rf'<tr data-asset="{asset}">(.*?)</tr>', section(page, "balances"),
                     re.S).group(1)


# ---------------------------------------------------------------- all assets


def test_the_all_assets_history_shows_every_wallet_newest_first_each_in_its_decimals(
        login, euro, make_user):
    user_id = make_user(name="mia")
    gold = ledger.topup(user_id, "GOLD", 1_500, "mia-gold", description="Gold in")
    eur = ledger.topup(user_id, EUR, 12_345, "mia-eur", description="Euro in")
    spent = ledger.spend(user_id, "GOLD", 5, "mia-spend", description="Shop")
    page = login("viewer").get(f"/users/{user_id}?asset=all").text
    assert re.search(r'aria-current="true">All assets</a>', page)
    rows = history_rows(page)
    assert [row[1] for row in rows] == [f"#{spent.id}", f"#{eur.id}", f"#{gold.id}"]
    assert [row[2] for row in rows] == ["GOLD", EUR, "GOLD"]  # each row names its asset
    assert [row[-2:] for row in rows] == [[f"{MINUS}5 GOLD", "1,495 GOLD"],
                                          ["+123.45 EUR", "123.45 EUR"],
                                          ["+1,500 GOLD", "1,500 GOLD"]]


def test_one_asset_s_history_still_shows_only_that_wallet(login, euro, make_user):
    user_id = make_user(name="noa")
    ledger.topup(user_id, "GOLD", 7, "noa-gold")
    ledger.topup(user_id, EUR, 250, "noa-eur")
    rows = history_rows(login("viewer").get(f"/users/{user_id}?asset={EUR}").text)
    assert [row[-2:] for row in rows] == [["+2.50 EUR", "2.50 EUR"]]


def test_the_all_assets_history_pages_every_wallet_with_one_cursor(login, make_user):
    user_id = make_user(name="ola")
    for number in range(25):
        ledger.topup(user_id, ("GOLD", "DIAMOND")[number % 2], number + 1, f"ola-{number}")
    viewer = login("viewer")
    partial = viewer.htmx("GET", f"/users/{user_id}/history?asset=all").text
    first = [row[1] for row in history_rows(partial)]
    more = re.search(r'hx-get="(/users/\d+/history\?[^"]*cursor=[^"]+)"', partial).group(1)
    rest_html = viewer.htmx("GET", html.unescape(more)).text
    rest = re.findall(r'<a href="/ledger/\d+">(#\d+)</a>', rest_html)
    assert len(first) == 20 and len(rest) == 5 and "Load more" not in rest_html
    everything = first + rest
    assert everything == sorted(everything, key=lambda tx: int(tx[1:]), reverse=True)
    assert len(set(everything)) == 25


# ---------------------------------------------------------------- sparkline


def test_a_small_move_stays_small_on_a_sparkline_drawn_from_zero():
    line = sparkline([100, 105, 103], width=160, height=32)
    heights = [float(point.split(",")[1]) for point in line.points.split()]
    assert (line.low, line.high) == (100, 105)
    assert max(heights) - min(heights) < 2  # of 28 units: 5 of 105 is a small move
    swing = sparkline([0, 105, 3], width=160, height=32)
    swing_heights = [float(point.split(",")[1]) for point in swing.points.split()]
    assert max(swing_heights) - min(swing_heights) == 28  # a real swing still fills the box


def test_the_balances_card_labels_the_sparkline_with_its_highest_and_lowest(login, euro,
                                                                            make_user):
    user_id = make_user(name="pia")
    ledger.topup(user_id, EUR, 10_000, "pia-1")
    ledger.topup(user_id, EUR, 500, "pia-2")
    ledger.spend(user_id, EUR, 200, "pia-3")
    row = balances_row(login("viewer").get(f"/users/{user_id}").text, EUR)
    assert '<span class="spark-high">max 105.00</span>' in row
    assert '<span class="spark-low">min 100.00</span>' in row
    assert ('aria-label="EUR balance over its last postings: highest 105.00, lowest 100.00 EUR"'
            in row)


def test_a_single_posting_is_a_dot_with_its_balance_not_a_line(login, customer):
    row = balances_row(login("viewer").get(customer.page).text)
    assert "<circle" in row and "<polyline" not in row
    assert '<span class="spark-high">100</span>' in row and "spark-low" not in row
    assert sparkline([5], width=100, height=20).points == ""


# ---------------------------------------------------------------- times


def test_times_are_time_elements_in_utc_with_the_utc_text_in_their_title(login, customer):
    page = login("viewer").get(customer.page).text
    times = TIME.findall(page)
    assert len(times) >= 2  # the user's "since" and the history's row
    for moment, title, text in times:
        assert text == title  # UTC until the browser's script rewrites the text
        assert title.replace(" UTC", "") == moment.replace("T", " ").removesuffix("Z")


def test_every_template_writes_times_through_the_one_macro():
    templates = Path(ROOT_DIR, "templates")
    printing = [str(path.relative_to(templates)) for path in templates.rglob("*.html")
                if "|timestamp" in path.read_text() or "strftime" in path.read_text()]
    assert printing == ["_macros/ui.html"], "write times with the `when` macro of _macros/ui.html"


# ---------------------------------------------------------------- the ledger table


def test_a_long_reference_is_one_clipped_line_with_the_whole_value_in_its_title(login,
                                                                                customer):
    reference = "partner-shop:order:" + "7f3a9c" * 8
    ledger.topup(customer.id, "GOLD", 5, reference, description="A long description of it")
    page = login("viewer").get("/ledger").text
    assert (f'<td class="mono reference"><span class="clip" title="{reference}">{reference}'
            '</span></td>') in page
    assert '<td class="description">A long description of it</td>' in page
