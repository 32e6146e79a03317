"""Issue 15, the dashboard day: the users list without a search, and ledger exports named after
their filters (the dashboard's and the API's by one function, safe whatever the filters hold)."""
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from wallet_web import accounts, api_keys, exports
from wallet_web.queries import TransactionFilters

from .conftest import Browser

SAFE_ATTACHMENT = re.compile(r"attachment; filename=(transactions[A-Za-z0-9._-]*\.csv)")
HOSTILE_REFERENCES = [
    'say "hi"', "it's", "../../etc/passwd", "C:\\Windows\\win.ini", "a\r\nSet-Cookie: x=1",
    "a; filename=evil.exe", "café ☕ 💰 ＝1+1", "💰💰", "..", "x" * 500, "-_.", "%0d%0a",
]


def user_rows(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr data-user="(\d+)">', html)]


def attachment_name(response) -> str:
    match = SAFE_ATTACHMENT.fullmatch(response.headers["Content-Disposition"])
    assert match, response.headers["Content-Disposition"]
    return match.group(1)


# ---------------------------------------------------------------- the users list


def test_the_users_page_without_a_search_lists_users_newest_first_with_their_status(
        login, make_user):
    older, newer = make_user(name="older-user"), make_user(name="newer-user")
    accounts.change_status(older, "freeze", "Set up by the test")
    page = login("viewer").get("/users")
    assert page.status_code == 200
    rows = user_rows(page.text)
    assert rows[:2] == [newer, older] and rows == sorted(rows, reverse=True)
    assert re.search(rf'<tr data-user="{older}">.*?class="status status-frozen">frozen<',
                     page.text, re.DOTALL)
    assert re.search(rf'<tr data-user="{newer}">.*?class="status status-active">active<',
                     page.text, re.DOTALL)
    assert ">system</a>" not in page.text


def test_the_users_list_pages_by_keyset_and_load_more_brings_the_rest_once(login, make_user):
    made = [make_user(name=f"paged-{number:02}") for number in range(30)]
    viewer = login("viewer")
    first = viewer.get("/users").text
    shown = user_rows(first)
    assert len(shown) == 25 and shown == sorted(made, reverse=True)[:25]
    more = re.search(r'hx-get="(/users\?[^"]*cursor=[^"]+)"', first).group(1)
    rest = user_rows(viewer.htmx("GET", more.replace("&amp;", "&")).text)
    assert rest and not set(rest) & set(shown)
    assert set(made) <= set(shown + rest) and rest == sorted(rest, reverse=True)


def test_a_search_still_filters_the_users_list(login, make_user):
    wanted, _ = make_user(name="findme-1"), make_user(name="other-1")
    page = login("viewer").get("/users?q=findme")
    assert user_rows(page.text) == [wanted]
    assert "Matching users" in page.text


# ---------------------------------------------------------------- export names


def test_the_ledger_csv_is_named_after_its_filters_and_time_range(login, customer):
    viewer = login("viewer")
    response = viewer.get(f"/ledger/transactions.csv?kind=topup&asset=GOLD&user_id={customer.id}"
                          "&since=2026-11-01T00:00&until=2026-11-30T00:00")
    assert response.status_code == 200
    assert attachment_name(response) == (
        f"transactions_user-{customer.id}_GOLD_topup_2026-11-01_to_2026-11-30.csv")


def test_without_filters_the_ledger_csv_is_transactions_csv(login):
    assert attachment_name(login("viewer").get("/ledger/transactions.csv")) == "transactions.csv"


def test_the_manifest_download_has_the_stem_of_the_csv_it_pins(login, customer):
    viewer = login("viewer")
    filters = f"kind=topup&user_id={customer.id}&since=2026-11-01T10:30"
    manifest = viewer.get(f"/ledger/transactions.manifest.json?{filters}")
    stem = f"transactions_user-{customer.id}_topup_from_2026-11-01T103000Z"
    assert manifest.headers["Content-Disposition"] == f"attachment; filename={stem}.manifest.json"
    assert attachment_name(viewer.get(manifest.json["csv_url"])) == f"{stem}.csv"


def test_the_dashboard_and_the_api_name_the_same_export_alike(login, app, customer):
    filters = f"kind=topup&asset=GOLD&user_id={customer.id}&reference_id=opening:carla"
    dashboard = login("viewer").get(f"/ledger/transactions.csv?{filters}")
    token = api_keys.create_key("names", "read")[1]
    api = Browser(app).get(f"/api/v1/transactions.csv?{filters}",
                           headers={"Authorization": f"Bearer {token}"})
    assert attachment_name(dashboard) == attachment_name(api) == (
        f"transactions_user-{customer.id}_GOLD_topup_ref-opening-carla.csv")


@pytest.mark.parametrize("reference", HOSTILE_REFERENCES)
def test_a_hostile_reference_never_breaks_the_download_header(login, reference):
    response = login("viewer").get("/ledger/transactions.csv",
                                   query_string={"reference_id": reference})
    if len(reference) > 128:  # refused by the form: back to it, no file
        assert response.status_code == 302 and "Content-Disposition" not in response.headers
        return
    assert response.status_code == 200
    assert len(attachment_name(response)) <= exports.NAME_STEM_MAX + len(".csv")


@pytest.mark.parametrize("reference", HOSTILE_REFERENCES)
def test_the_name_function_keeps_any_value_to_safe_characters_and_a_bounded_length(reference):
    moment = datetime(2026, 11, 1, 10, 30, 5, tzinfo=timezone(timedelta(hours=2)))
    everything = TransactionFilters(
        user_id=2**63 - 1, account_id=2**63 - 1, asset="DIAMOND", kind="reversal",
        reference_id=reference, since=moment, until=moment, metadata=f"k:{reference}",
        reason_code=reference, ticket=reference, text=reference, amount=Decimal("12.50"))
    for filters in (TransactionFilters(reference_id=reference), everything):
        for extension in ("csv", "manifest.json"):
            name = exports.ledger_filename(filters, extension)
            assert re.fullmatch(r"transactions_[A-Za-z0-9._-]+", name), name
            assert len(name) <= exports.NAME_STEM_MAX + len(f".{extension}")
    assert exports.ledger_filename(everything).endswith(
        "_2026-11-01T083005Z_to_2026-11-01T083005Z.csv")  # the period is kept, in UTC


def test_a_search_and_an_amount_name_the_export_too(login):
    response = login("viewer").get("/ledger/transactions.csv",
                                   query_string={"q": "lost sword", "amount": "12"})
    assert attachment_name(response) == "transactions_q-lost-sword_amount-12.csv"


def test_a_value_with_nothing_safe_in_it_is_named_by_its_hash():
    first = exports.ledger_filename(TransactionFilters(reference_id="💰💰"))
    second = exports.ledger_filename(TransactionFilters(reference_id="☕"))
    assert re.fullmatch(r"transactions_ref-[0-9a-f]{8}\.csv", first) and first != second
