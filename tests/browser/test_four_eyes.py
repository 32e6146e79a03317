"""Four-eyes approval in real browsers: two operators, each in a browser context of their own
(Chromium, real HTTP, PostgreSQL). A large movement waits for another operator's approval and
then moves exactly once; the maker cannot approve it; two approvers at once move it once; the
daily limit says what is left."""
import re

import pytest
from playwright.sync_api import expect

from tests.web.conftest import OPENING, gold_of, make_request, request_row  # noqa: F401
from wallet_web import controls, operators

from .conftest import screenshot, sign_in
from .test_dashboard import fill_movement, stored

AMOUNT = 20_000  # above the default approval threshold (10,000), within the daily limit


def refused_statuses(page, *statuses: int) -> list[str]:
    """Console errors but Chromium's note of a refusal the test asked for."""
    return [text for text in page.console_problems
            if not any(f"status of {status}" in text for status in statuses)]


def send_for_approval(page, customer, amount: int = AMOUNT) -> int:
    """A goodwill top-up from the customer's page; the request id it was sent as."""
    page.goto(customer.page)
    form = page.locator("#form-topup")
    fill_movement(form, f"{amount:,}", "Goodwill for the outage", ticket="SUP-100")
    form.get_by_role("button", name="Top up").click()
    confirmation = page.locator("#form-topup .success")
    expect(confirmation).to_contain_text("Sent for approval (request #")
    return int(re.search(r"request #(\d+)", confirmation.inner_text()).group(1))


def open_request(page, request_id: int) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    page.wait_for_url("**/approvals")
    page.locator("#approval-results").get_by_role("link", name=f"#{request_id}").click()
    page.wait_for_url(f"**/approvals/{request_id}")


def test_a_large_goodwill_credit_goes_from_maker_to_checker_and_moves_once(log_in, open_tab,
                                                                           customer):
    maker = log_in("operator", "mia")
    checker = sign_in(open_tab(), "operator", "chad", can_approve=True)
    before = stored()
    request_id = send_for_approval(maker, customer)
    expect(maker.locator("#form-topup .success")).to_contain_text(
        f"Top up of {AMOUNT:,} GOLD waits for another operator with the approver right")
    expect(maker.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text(f"{OPENING}")
    assert gold_of(customer.id) == OPENING and stored() == before

    checker.reload()
    badge = checker.get_by_role("navigation", name="Main").locator(".badge")
    expect(badge).to_have_text("1")
    open_request(checker, request_id)
    expect(checker.locator(".facts")).to_contain_text("operator:mia")
    expect(checker.get_by_role("link", name="SUP-100")).to_have_count(0)  # an id: no link
    checker.get_by_label("Why approve").fill("Outage confirmed in SUP-100")
    screenshot(checker, "approval-request")
    checker.get_by_role("button", name=f"Approve request #{request_id}").click()
    transaction_id = request_row(request_id).transaction_id
    expect(checker.locator("#flash")).to_contain_text(
        f"Request #{request_id} approved: Top up of {AMOUNT:,} GOLD recorded as transaction "
        f"#{transaction_id}.")
    expect(badge).to_have_count(0)
    assert gold_of(customer.id) == OPENING + AMOUNT and stored() == before + 1

    maker.reload()
    expect(maker.locator('#balances tr[data-asset="GOLD"] .balance')).to_contain_text(
        f"{OPENING + AMOUNT:,}")
    assert maker.console_problems == [] and checker.console_problems == []


def test_the_makers_own_request_offers_no_approval_and_a_forced_one_is_refused(log_in,
                                                                              customer):
    maker = log_in("operator", "mia", can_approve=True)  # an approver, of others' requests
    request_id = send_for_approval(maker, customer)
    maker.locator("#form-topup .success").get_by_role(
        "link", name=f"View request #{request_id}").click()
    maker.wait_for_url(f"**/approvals/{request_id}")
    expect(maker.locator("#own-request")).to_have_text(
        "Your request: another operator must approve it.")
    expect(maker.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    before = stored()
    status = maker.evaluate("""async (path) => {
        const headers = JSON.parse(document.body.getAttribute("hx-headers"));
        const body = new URLSearchParams({"approve-reason": "My own"});
        const response = await fetch(path, {method: "POST", headers, body});
        return response.status;
    }""", f"/approvals/{request_id}/approve")
    assert status == 403
    assert request_row(request_id).status == "pending"
    assert gold_of(customer.id) == OPENING and stored() == before
    assert refused_statuses(maker, 403) == []


def test_two_approvers_at_once_move_it_once_and_one_is_told_it_was_already_approved(
        page, open_tab, customer, make_request):  # noqa: F811
    request_id = make_request(customer.id, amount=AMOUNT)
    checkers = [sign_in(page, "operator", "ann", can_approve=True),
                sign_in(open_tab(), "admin", "bob")]
    for checker in checkers:
        checker.goto(f"/approvals/{request_id}")
        checker.get_by_label("Why approve").fill("Looks right")
    before = stored()
    for checker in checkers:  # both sent before either answer is waited for
        checker.get_by_role("button", name=f"Approve request #{request_id}").click(
            no_wait_after=True)
    answers = []
    for checker in checkers:
        checker.wait_for_selector("#flash .notice, #decision-refused")
        answers.append(checker.locator("#flash .notice, #decision-refused").first.inner_text())
    winner = request_row(request_id).checker.removeprefix("operator:")
    assert sorted(answer.split(":")[0] for answer in answers) == [
        f"Request #{request_id} approved",
        f"Request #{request_id} was already approved by {winner}."]
    assert gold_of(customer.id) == OPENING + AMOUNT and stored() == before + 1
    assert all(refused_statuses(checker, 409) == [] for checker in checkers)


def test_the_daily_limit_reached_says_what_is_left_today(log_in, customer):
    maker = log_in("operator", "mia")
    controls.set_operator_limit(operators.find_operator("mia").id, "GOLD", 2_500)
    maker.goto(customer.page)
    left = maker.locator('#limits tr[data-asset="GOLD"] .left-today')
    expect(left).to_have_text("2,500")
    form = maker.locator("#form-topup")
    fill_movement(form, "2,000", "Compensation", code="compensation")
    form.get_by_role("button", name="Top up").click()
    expect(form.locator(".success")).to_contain_text("recorded as transaction")
    expect(left).to_have_text("500")
    fill_movement(form, "1,000", "More compensation", code="compensation")
    form.get_by_role("button", name="Top up").click()
    expect(maker.locator("#topup-amount-error")).to_have_text(
        "Above your daily GOLD limit: 500 of 2,500 left today (UTC).")
    assert gold_of(customer.id) == OPENING + 2_000
    screenshot(maker, "daily-limit")
    assert refused_statuses(maker, 422) == []


@pytest.mark.parametrize("page", [False], ids=["no-js"], indirect=True)
def test_an_approval_works_without_javascript(log_in, customer, make_request):  # noqa: F811
    request_id = make_request(customer.id, amount=AMOUNT)
    checker = log_in("admin", "bob")
    checker.goto(f"/approvals/{request_id}")
    checker.get_by_label("Why approve").fill("Checked without scripts")
    checker.get_by_role("button", name=f"Approve request #{request_id}").click()
    checker.wait_for_url(f"**/approvals/{request_id}")
    expect(checker.locator("#flash")).to_contain_text(f"Request #{request_id} approved")
    assert gold_of(customer.id) == OPENING + AMOUNT
