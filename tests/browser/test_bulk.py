"""Bulk grants in real browsers (Chromium, real HTTP, PostgreSQL): an operator uploads a
compensation file through the file chooser, reads its preview and submits it; another operator
approves it from the approvals page and follows its progress to the result, then downloads the
result CSV. Posting runs on the server: the maker's closed tab changes nothing."""
import csv
import re

from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.bulk_files import grant_file, moved_by, players, wait_for
from wallet_web import bulk
from wallet_web.extensions import db
from wallet_web.models import Account

from .conftest import screenshot, sign_in

ROWS = 1_100  # two ledger batches
AMOUNT = 10  # 11,000 GOLD: above the approval threshold (10,000)


def gold_of(users) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.sum(Account.balance)).where(
        Account.kind == "wallet", Account.asset_code == "GOLD",
        Account.user_id.in_([user.id for user in users])))


def upload_and_submit(maker, data: bytes) -> int:
    """The maker's part: upload, read the preview, submit with a reason code and a ticket."""
    maker.get_by_role("navigation", name="Main").get_by_role("link", name="Bulk grants").click()
    maker.wait_for_url("**/bulk")
    maker.get_by_label("CSV file").set_input_files(
        files=[{"name": "may-outage.csv", "mimeType": "text/csv", "buffer": data}])
    maker.get_by_label("Grant as").select_option("bonus")
    maker.get_by_role("button", name="Preview").click()
    maker.wait_for_url(re.compile(r".*/bulk/\d+$"))
    grant_id = int(maker.url.rsplit("/", 1)[1])
    expect(maker.locator("h1")).to_contain_text(f"Bulk grant #{grant_id} draft")
    gold = maker.locator("table.totals tr", has_text="GOLD")
    expect(gold).to_contain_text(f"{ROWS:,}")
    expect(gold).to_contain_text(f"{ROWS * AMOUNT:,}")
    expect(gold).to_contain_text("needed (from 10,000)")
    expect(maker.locator("table.largest tbody tr")).to_have_count(bulk.LARGEST_SHOWN)
    expect(maker.locator("#decision")).to_contain_text(
        "the whole file goes to another operator for approval")
    form = maker.locator("#submit")
    form.get_by_label("Reason code").select_option("compensation")
    form.get_by_label("Reason", exact=True).fill("Outage of May 1st")
    form.get_by_label("Ticket").fill("SUP-2024")
    screenshot(maker, "bulk-grant-preview")
    form.get_by_role("button", name=f"Submit {ROWS:,} grants").click()
    expect(maker.locator("#flash")).to_contain_text(
        f"Bulk grant #{grant_id} sent for approval: another operator must approve it.")
    expect(maker.locator("#own-request")).to_be_visible()
    return grant_id


def test_a_compensation_file_goes_from_maker_to_checker_and_posts_each_row_once(log_in,
                                                                               open_tab):
    users = players(ROWS)
    maker = log_in("operator", "mia")
    checker = sign_in(open_tab(), "operator", "chad", can_approve=True)

    grant_id = upload_and_submit(maker, grant_file(users, amount=AMOUNT))

    assert gold_of(users) == 0
    checker.reload()
    expect(checker.get_by_role("navigation", name="Main").locator(".badge")).to_have_text("1")
    checker.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    checker.wait_for_url("**/approvals")
    waiting = checker.locator("#bulk-waiting")
    expect(waiting).to_contain_text("may-outage.csv")
    expect(waiting).to_contain_text("operator:mia")
    waiting.get_by_role("link", name=f"Bulk grant #{grant_id}").click()
    checker.wait_for_url(f"**/bulk/{grant_id}")
    checker.get_by_label("Why approve").fill("Outage confirmed in SUP-2024")
    maker.reload()  # the maker watches too, then closes the tab while it posts
    checker.get_by_role("button", name=f"Approve bulk grant #{grant_id}").click()
    maker.close()

    expect(checker.locator("#flash")).to_contain_text(
        f"Bulk grant #{grant_id} approved: it is being posted.")
    expect(checker.locator("#progress-text")).to_contain_text(
        f"{ROWS:,} of {ROWS:,} rows done · {ROWS:,} posted")
    expect(checker.locator("h1 .status")).to_have_text("done")  # reloaded by HX-Refresh
    expect(checker.locator("table.outcomes tbody tr")).to_have_count(200)
    expect(checker.locator("table.outcomes .outcome-posted")).to_have_count(200)
    with checker.expect_download() as downloading:
        checker.get_by_role("link", name="Download CSV").click()
    download = downloading.value
    assert download.suggested_filename == f"bulk-grant-{grant_id}-result.csv"
    with open(download.path(), newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == ROWS and {row["outcome"] for row in rows} == {"posted"}
    assert [row["user"] for row in rows[:2]] == [users[0].name, users[1].name]

    grant = wait_for(grant_id)
    assert (grant.posted, grant.refused, grant.checker) == (ROWS, 0, "operator:chad")
    assert moved_by(grant.file_sha256) == ROWS and gold_of(users) == ROWS * AMOUNT
    assert maker.console_problems == [] and checker.console_problems == []


def test_the_maker_may_close_the_tab_at_once_and_the_grant_still_finishes(log_in):
    users = players(1_200)
    maker = log_in("operator", "mia")
    maker.goto("/bulk")
    maker.get_by_label("CSV file").set_input_files(
        files=[{"name": "small.csv", "mimeType": "text/csv", "buffer": grant_file(users, 1)}])
    maker.get_by_role("button", name="Preview").click()
    maker.wait_for_url(re.compile(r".*/bulk/\d+$"))
    grant_id = int(maker.url.rsplit("/", 1)[1])
    form = maker.locator("#submit")
    form.get_by_label("Reason code").select_option("compensation")
    form.get_by_label("Reason", exact=True).fill("Small outage")
    form.get_by_role("button", name="Submit 1,200 grants").click()
    expect(maker.locator("#progress-text")).to_contain_text("of 1,200 rows done")
    problems = list(maker.console_problems)
    maker.close()  # below the threshold: posting started with the submission, on the server

    grant = wait_for(grant_id)

    assert (grant.posted, grant.refused) == (1_200, 0)
    assert moved_by(grant.file_sha256) == 1_200 and gold_of(users) == 1_200
    assert problems == []
