"""Four-eyes approval on the dashboard: the queue, a request's page, approve and reject by
another operator with the approver right, and every refusal inline with its status (Flask test
client, real PostgreSQL, real threads for the race)."""
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from wallet_web import accounts, controls, ledger
from wallet_web.extensions import db
from wallet_web.limits import BALANCE_CEILING
from wallet_web.models import AuditEvent, Transaction

from .actions import refusals
from .conftest import OPENING, Browser, count_transactions, gold_of, request_row, threshold


def approve(browser, request_id: int, reason: str = "Checked the ticket"):
    browser.get(f"/approvals/{request_id}")
    return browser.post(f"/approvals/{request_id}/approve", {"approve-reason": reason})


def reject(browser, request_id: int, reason: str = "No ticket for this"):
    browser.get(f"/approvals/{request_id}")
    return browser.post(f"/approvals/{request_id}/reject", {"reject-reason": reason})


def refusal_of(html: str) -> str:
    match = re.search(r'id="decision-refused">([^<]+)<', html)
    assert match, "no refusal shown on the request's page"
    return match.group(1)


def listed(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-request="(\d+)">', html)]


@pytest.fixture
def checker(login):
    """bob: an operator holding the approver right."""
    return login("operator", "bob", can_approve=True)


# ---------------------------------------------------------------- the queue


def test_the_queue_lists_pending_requests_newest_first_with_everything_a_checker_needs(
        login, customer, make_user, make_request):
    other = make_user(name="dora")
    first = make_request(customer.id, ticket="https://tickets.example/SUP-1")
    second = make_request(other, kind="bonus", amount=threshold() + 1, ticket="SUP-2",
                          description="Prize <b>twice</b>")
    page = login("operator").get("/approvals").text
    assert listed(page) == [second, first]
    row = re.search(rf'<tr data-request="{second}">(.*?)</tr>', page, re.DOTALL).group(1)
    cells = [cell.strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
    assert cells[0] == f'<a href="/approvals/{second}">#{second}</a>'
    assert cells[1] == '<span class="kind kind-bonus">bonus</span>'
    assert cells[2] == f'<a href="/users/{other}">dora</a>'
    assert f"{threshold() + 1:,}" in cells[3] and "GOLD" in cells[3]
    assert cells[4:8] == ["goodwill", '<span class="ticket mono">SUP-2</span>',
                          "Prize &lt;b&gt;twice&lt;/b&gt;", "operator:maker"]
    created, expires = (
        f'<time datetime="{moment:%Y-%m-%dT%H:%M:%SZ}" title="{moment:%Y-%m-%d %H:%M:%S UTC}">'
        f'{moment:%Y-%m-%d %H:%M:%S UTC}</time>'
        for moment in (request_row(second).created_at, request_row(second).expires_at))
    assert cells[8] == f'{created}<br><span class="muted small">expires {expires}</span>'
    assert cells[9] == '<span class="status request-pending">pending</span>'
    assert 'href="https://tickets.example/SUP-1"' in page


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_readers_may_not_open_the_approvals(login, customer, make_request, role):
    request_id = make_request(customer.id)
    reader = login(role)
    for path in ("/approvals", f"/approvals/{request_id}"):
        assert reader.get(path).status_code == 403
    assert "Approvals" not in reader.get("/").text.split("<main")[0]  # not in the navigation


def test_the_queue_loads_more_with_a_keyset_cursor_keeping_the_status(login, customer,
                                                                      make_request):
    controls.set_policy("GOLD", approval_threshold=1, operator_daily_limit=BALANCE_CEILING)
    made = [make_request(customer.id, amount=n + 1) for n in range(27)]
    operator = login("operator")
    first = operator.get("/approvals?status=pending").text
    assert listed(first) == made[::-1][:25]
    more = re.search(r'hx-get="(/approvals\?[^"]*cursor=[^"]+)"', first).group(1)
    more = more.replace("&amp;", "&")
    assert "status=pending" in more and "rows=1" in more
    rows = operator.htmx("GET", more).text
    assert listed(rows) == made[1::-1] and "<table" not in rows and "Load more" not in rows


def test_the_status_filter_is_kept_in_the_url_and_shows_decided_requests(login, customer,
                                                                         make_request, checker):
    approved, rejected, waiting = (make_request(customer.id) for _ in range(3))
    approve(checker, approved, "Ticket checked")
    reject(checker, rejected, "No ticket")
    operator = login("operator")
    assert listed(operator.get("/approvals").text) == [waiting]
    page = operator.get("/approvals?status=approved").text
    assert listed(page) == [approved] and '<option selected value="approved">' in page
    row = re.search(rf'<tr data-request="{approved}">(.*?)</tr>', page, re.DOTALL).group(1)
    tx_id = request_row(approved).transaction_id
    assert "operator:bob: Ticket checked" in row
    assert f'<a href="/ledger/{tx_id}">Transaction #{tx_id}</a>' in row
    assert listed(operator.get("/approvals?status=rejected").text) == [rejected]
    assert listed(operator.get("/approvals?status=any").text) == [waiting, rejected, approved]
    partial = operator.htmx("GET", "/approvals?status=rejected").text
    assert partial.lstrip().startswith('<div id="approvals">') and "<html" not in partial


def test_an_unknown_status_is_an_inline_error(login):
    response = login("operator").get("/approvals?status=lost")
    assert response.status_code == 422 and 'id="status-error"' in response.text
    assert "Fix the filter above" in response.text


def test_the_navigation_counts_the_requests_an_approver_may_decide(login, customer,
                                                                   make_request, make_operator):
    make_request(customer.id), make_request(customer.id)
    bob = login("operator", "bob", can_approve=True)
    assert re.search(r'<span class="badge"[^>]*>2</span>', bob.get("/").text)
    assert 'class="badge"' not in login("operator", "olga").get("/").text  # no approver right


# ---------------------------------------------------------------- approving


def test_another_approver_approves_and_the_movement_is_posted_once(login, customer,
                                                                   make_request, checker):
    request_id = make_request(customer.id, ticket="SUP-7")
    before = count_transactions()
    page = checker.get(f"/approvals/{request_id}").text
    assert 'id="form-approve"' in page and 'id="form-reject"' in page
    response = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Verified"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/approvals/{request_id}"
    row = request_row(request_id)
    assert (row.status, row.checker, row.decision_reason) == ("approved", "operator:bob",
                                                               "Verified")
    assert count_transactions() == before + 1 and gold_of(customer.id) == OPENING + threshold()
    page = checker.get(response.headers["Location"]).text
    assert (f"Request #{request_id} approved: Top up of {threshold():,} GOLD recorded as "
            f"transaction #{row.transaction_id}.") in page
    assert 'id="form-approve"' not in page and "Approved by operator:bob" in page
    tx = db.session.get(Transaction, row.transaction_id)
    assert (tx.actor, tx.meta["checker"], tx.meta["ticket"]) == (
        "operator:maker", "operator:bob", "SUP-7")


def test_the_same_approval_sent_twice_posts_once_and_the_second_is_told(login, customer,
                                                                        make_request, checker):
    request_id = make_request(customer.id)
    before = count_transactions()
    assert approve(checker, request_id).status_code == 303
    again = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Again"})
    assert again.status_code == 409
    assert refusal_of(again.text) == f"Request #{request_id} was already approved by bob."
    assert count_transactions() == before + 1 and gold_of(customer.id) == OPENING + threshold()


def test_two_approvers_at_the_same_instant_post_once_and_one_is_told(app, login, customer,
                                                                     make_request):
    request_id = make_request(customer.id)
    checkers = [login("operator", name, can_approve=True) for name in ("bob", "ann")]
    for browser in checkers:
        browser.get(f"/approvals/{request_id}")
    start = threading.Barrier(2, timeout=60)  # only a hang waits that long
    before = count_transactions()

    def decide(browser: Browser):
        start.wait()
        return browser.post(f"/approvals/{request_id}/approve", {"approve-reason": "Mine"})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(decide, checkers))
    assert sorted(answer.status_code for answer in answers) == [303, 409]
    told = next(answer for answer in answers if answer.status_code == 409)
    winner = request_row(request_id).checker.removeprefix("operator:")
    assert refusal_of(told.text) == f"Request #{request_id} was already approved by {winner}."
    assert count_transactions() == before + 1 and gold_of(customer.id) == OPENING + threshold()


def test_the_maker_is_told_to_wait_and_a_forced_approval_is_refused(login, customer,
                                                                    make_request):
    maker = login("operator", "mia", can_approve=True)  # an approver, but of others' requests
    request_id = make_request(customer.id, maker="mia")
    page = maker.get(f"/approvals/{request_id}").text
    assert "Your request: another operator must approve it." in page
    assert 'id="form-approve"' not in page and "/approve" not in page
    before, refused = count_transactions(), len(refusals("approval.refused"))
    response = maker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Myself"})
    assert response.status_code == 403
    assert refusal_of(response.text) == ("Your request: another operator must approve it. "
                                         "Nothing changed.")
    assert count_transactions() == before and gold_of(customer.id) == OPENING
    assert request_row(request_id).status == "pending"
    assert [event.details["error"] for event in refusals("approval.refused")[refused:]] == [
        "self_approval"]
    assert 'class="badge"' not in maker.get("/").text  # nothing of theirs to decide


def test_an_operator_without_the_approver_right_sees_no_decision_and_is_refused(
        login, customer, make_request):
    request_id = make_request(customer.id)
    operator = login("operator", "olga")
    page = operator.get(f"/approvals/{request_id}").text
    assert "Waiting for an operator with the approver right." in page
    assert 'id="form-approve"' not in page
    before, denied = count_transactions(), len(refusals())
    for decision in ("approve", "reject"):
        response = operator.post(f"/approvals/{request_id}/{decision}",
                                 {f"{decision}-reason": "Let me"})
        assert response.status_code == 403 and "This needs the approver right." in response.text
    assert count_transactions() == before and request_row(request_id).status == "pending"
    assert len(refusals()) == denied + 2


def test_a_decision_needs_a_reason(login, customer, make_request, checker):
    request_id = make_request(customer.id)
    checker.get(f"/approvals/{request_id}")
    response = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "  "})
    assert response.status_code == 422
    assert re.search(r'id="approve-reason-error">Say why', response.text)
    assert request_row(request_id).status == "pending" and gold_of(customer.id) == OPENING


def test_a_request_that_does_not_exist_is_the_404_page(checker):
    assert checker.get("/approvals/999999").status_code == 404
    assert checker.post("/approvals/999999/approve", {"approve-reason": "x"}).status_code == 404


# ---------------------------------------------------------------- rejecting


def test_a_rejected_request_moves_nothing_and_cannot_be_approved_after(login, customer,
                                                                       make_request, checker):
    request_id = make_request(customer.id)
    before = count_transactions()
    response = reject(checker, request_id, "Duplicate of SUP-3")
    assert response.status_code == 303
    assert f"Request #{request_id} rejected: nothing moved." in checker.get(
        f"/approvals/{request_id}").text
    row = request_row(request_id)
    assert (row.status, row.checker, row.decision_reason) == ("rejected", "operator:bob",
                                                               "Duplicate of SUP-3")
    other = login("admin", "ann")
    refused = approve(other, request_id)
    assert refused.status_code == 409
    assert refusal_of(refused.text) == f"Request #{request_id} was already rejected by bob."
    assert count_transactions() == before and gold_of(customer.id) == OPENING


# ---------------------------------------------------------------- expiry


def test_an_expired_request_leaves_the_queue_and_cannot_be_decided(
        app, login, customer, make_request, checker, approvals_clock):
    request_id = make_request(customer.id)
    approvals_clock.advance(timedelta(hours=app.config["APPROVAL_EXPIRY_HOURS"], seconds=1))
    before = count_transactions()
    response = approve(checker, request_id)
    assert response.status_code == 409
    expires = request_row(request_id).expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert refusal_of(response.text) == (f"This request expired at {expires}: it can no longer "
                                         "be decided. Nothing moved.")
    assert listed(checker.get("/approvals").text) == []
    assert listed(checker.get("/approvals?status=expired").text) == [request_id]
    assert request_row(request_id).status == "expired"
    assert count_transactions() == before and gold_of(customer.id) == OPENING


def test_the_queue_expires_what_is_due_when_it_is_opened(app, login, customer, make_request,
                                                         approvals_clock):
    due = make_request(customer.id)
    approvals_clock.advance(timedelta(hours=1))
    fresh = make_request(customer.id)
    approvals_clock.advance(timedelta(hours=app.config["APPROVAL_EXPIRY_HOURS"] - 1, seconds=1))
    page = login("operator").get("/approvals?status=any").text
    assert listed(page) == [fresh, due]
    assert (request_row(due).status, request_row(fresh).status) == ("expired", "pending")
    db.session.rollback()
    assert db.session.query(AuditEvent).filter_by(action="approval.expired",
                                                  object_id=str(due)).count() == 1


# ---------------------------------------------------------------- failing


def test_an_approval_the_ledger_refuses_fails_with_the_reason_and_moves_nothing(
        login, make_user, make_request, checker):
    spender = make_user(balance=threshold(), name="sally")
    request_id = make_request(spender, kind="spend")
    ledger.spend(spender, "GOLD", 5_000, "meanwhile")  # by the API, while the request waits
    before = count_transactions()
    response = approve(checker, request_id)
    assert response.status_code == 409
    held = f"{threshold() - 5_000:,}"
    assert refusal_of(response.text) == ("Approved, but it cannot be posted: not enough GOLD, "
                                         f"the wallet holds {held}. Nothing moved.")
    row = request_row(request_id)
    assert (row.status, row.transaction_id) == ("failed", None) and "holds" in row.failure
    assert count_transactions() == before and gold_of(spender) == threshold() - 5_000
    again = approve(login("admin", "ann"), request_id)
    assert again.status_code == 409 and refusal_of(again.text).startswith(
        f"Request #{request_id} was already approved by bob, but it could not be posted:")


def test_an_approval_of_a_spend_from_a_wallet_frozen_meanwhile_fails(customer, make_request,
                                                                      checker, make_user):
    spender = make_user(balance=threshold(), name="fran")
    request_id = make_request(spender, kind="spend")
    accounts.change_status(spender, "freeze", "Under review")
    response = approve(checker, request_id)
    assert response.status_code == 409
    assert refusal_of(response.text) == ("Approved, but it cannot be posted: the GOLD wallet it "
                                         "takes from is frozen. Nothing moved.")
    assert request_row(request_id).status == "failed" and gold_of(spender) == threshold()


# ---------------------------------------------------------------- without JavaScript


def test_the_request_page_is_plain_forms_that_work_without_javascript(customer, make_request,
                                                                      checker):
    request_id = make_request(customer.id)
    page = checker.get(f"/approvals/{request_id}").text
    form = re.search(r'<form id="form-approve"[^>]*>', page).group(0)
    assert 'method="post"' in form and f'action="/approvals/{request_id}/approve"' in form
    assert "hx-" not in form
    assert re.search(r'name="approve-csrf_token" type="hidden"', page)
