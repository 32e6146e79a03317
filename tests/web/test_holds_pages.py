"""Holds on the dashboard: the user page's available and held balances, its open holds and
their release by an operator (through the operator controls: posted at once, or sent for
approval), the transaction page of a hold and of its capture or release, and a release
waiting in the approvals queue."""
import re
import time

import pytest

from wallet_web import controls, holds, queries
from wallet_web.extensions import db

from .conftest import OPENING, REASON_CODE, count_transactions, gold_of, request_row, threshold


def place(user_id: int, amount: int = 30, reference: str = "shop-1", seconds: int = 600,
          description: str = "Sword of testing"):
    """A GOLD hold on the user's wallet (as a shop's server places it over the API)."""
    return holds.place(user_id, "GOLD", amount, reference, expires_in_seconds=seconds,
                       description=description).hold


def release_form(hold_id: int, code: str = REASON_CODE, reason: str = "Delivery failed",
                 reference: str = "web-release-1", ticket: str | None = None) -> dict:
    form = {f"release-{hold_id}-reason_code": code, f"release-{hold_id}-reason": reason,
            f"release-{hold_id}-reference_id": reference}
    if ticket is not None:
        form[f"release-{hold_id}-ticket"] = ticket
    return form


def release_path(customer, hold_id: int) -> str:
    return f"{customer.page}/holds/{hold_id}/release"


def status_of(hold_id: int) -> str:
    db.session.rollback()
    return queries.get_hold(hold_id).status


def balances_row(html: str, asset: str = "GOLD") -> tuple[str, str]:
    """(available, held) as the balances card shows them."""
    row = re.search(rf'<tr data-asset="{asset}">(.*?)</tr>', html, re.S).group(1)
    cell = r'class="num {}"><span class="money">([^&]+)&nbsp;'
    return (re.search(cell.format("balance"), row).group(1),
            re.search(cell.format("held"), row).group(1))


def hold_article(html: str, hold_id: int) -> str:
    return re.search(rf'<article class="hold" id="hold-{hold_id}".*?</article>', html,
                     re.S).group(0)


def error_of(html: str, field_id: str) -> str:
    return re.search(rf'id="{field_id}-error">([^<]+)<', html).group(1)


# ---------------------------------------------------------------- the user page


def test_the_balances_card_shows_what_is_available_and_what_is_held(login, customer):
    place(customer.id, 30)
    place(customer.id, 1, reference="shop-2")
    page = login("viewer").get(customer.page).text
    assert "<th scope=\"col\" class=\"num\">Available</th>" in page
    assert balances_row(page) == (f"{OPENING - 31}", "31")
    assert balances_row(page, "DIAMOND") == ("0", "0")
    assert "<polyline" in page and "Explain balance" in page


def test_the_open_holds_are_listed_with_their_age_expiry_reference_and_description(login,
                                                                                  customer):
    hold = place(customer.id, 30, seconds=600, description="Sword of testing")
    page = login("viewer").get(customer.page).text
    article = hold_article(page, hold.id)
    assert 'id="holds-title">Open holds<' in page
    assert "30&nbsp;" in article and f"hold #{hold.id}" in article
    assert re.search(r"<dd>\d+ s ago ", article)  # its age
    expires = hold.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f'<dd class="expires"><time datetime="{hold.expires_at:%Y-%m-%dT%H:%M:%SZ}" ' in article
    assert f'>{expires}</time> <span class="muted small">(in ' in article
    assert "shop-1" in article and "Sword of testing" in article
    assert f'href="/ledger/{hold.hold_transaction_id}"' in article


def test_settled_and_expired_holds_are_not_open_holds_and_no_holds_no_section(login, customer):
    viewer = login("viewer")
    assert 'id="holds"' not in viewer.get(customer.page).text
    captured = place(customer.id, 10, reference="shop-captured")
    holds.capture(captured.id, "shop-captured:capture")
    place(customer.id, 5, reference="shop-expiring", seconds=1)
    time.sleep(1.1)
    page = viewer.get(customer.page).text
    assert 'id="holds"' not in page
    assert balances_row(page) == (f"{OPENING - 10}", "0")  # an expired hold is available


# ---------------------------------------------------------------- releasing


def test_an_operator_releases_a_hold_and_it_goes_back_to_the_wallet(login, customer):
    hold = place(customer.id, 30)
    operator = login("operator", "olga")
    page = operator.get(customer.page).text
    assert f'action="/users/{customer.id}/holds/{hold.id}/release"' in page
    response = operator.htmx("POST", release_path(customer, hold.id),
                             release_form(hold.id, ticket="SUP-9"))
    assert response.status_code == 200
    assert f"Released hold #{hold.id}: 30 GOLD back to the wallet." in response.text
    assert 'id="balances" hx-swap-oob="true"' in response.text
    assert balances_row(response.text) == (f"{OPENING}", "0")
    assert 'id="history" hx-swap-oob="true"' in response.text
    assert "<form" not in hold_article(response.text, hold.id)
    assert status_of(hold.id) == "voided" and gold_of(customer.id) == OPENING
    release = queries.find_transaction_by_reference("web-release-1")
    assert (release.kind, release.actor, release.description) == ("void", "operator:olga",
                                                                  "Delivery failed")
    assert (release.meta["reason_code"], release.meta["ticket"]) == (REASON_CODE, "SUP-9")
    assert 'id="holds"' not in operator.get(customer.page).text


def test_a_release_without_javascript_redirects_to_the_page_with_the_confirmation(login,
                                                                                 customer):
    hold = place(customer.id, 30)
    operator = login("operator")
    response = operator.post(release_path(customer, hold.id), release_form(hold.id))
    assert response.status_code == 303
    assert response.headers["Location"] == f"{customer.page}?asset=GOLD"
    page = operator.get(response.headers["Location"]).text
    assert f"Released hold #{hold.id}: 30 GOLD back to the wallet." in page
    assert balances_row(page) == (f"{OPENING}", "0")
    assert status_of(hold.id) == "voided"


def test_the_same_release_form_sent_twice_releases_once(login, customer):
    hold = place(customer.id, 30)
    operator = login("operator")
    operator.htmx("POST", release_path(customer, hold.id), release_form(hold.id))
    before = count_transactions()
    operator.htmx("POST", release_path(customer, hold.id), release_form(hold.id))
    assert count_transactions() == before and gold_of(customer.id) == OPENING


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_a_reader_sees_the_holds_but_no_release_form_and_a_forced_post_is_refused(
        login, customer, role):
    hold = place(customer.id, 30)
    reader = login(role)
    article = hold_article(reader.get(customer.page).text, hold.id)
    assert "Sword of testing" in article and "<form" not in article
    before = count_transactions()
    response = reader.post(release_path(customer, hold.id), release_form(hold.id))
    assert response.status_code == 403 and "Not allowed" in response.text
    assert status_of(hold.id) == "open" and count_transactions() == before


def test_a_hold_of_another_user_or_none_is_not_found(login, customer, make_user):
    other = make_user(balance=50, name="otto")
    hold = place(other, 30)
    operator = login("operator")
    assert operator.post(release_path(customer, hold.id), release_form(hold.id)).status_code == 404
    assert operator.post(release_path(customer, 10**9), release_form(10**9)).status_code == 404
    assert status_of(hold.id) == "open"


# ---------------------------------------------------------------- at the approval threshold


def test_a_release_at_the_threshold_waits_for_approval_then_releases(login, customer,
                                                                    make_user):
    amount = threshold()
    user_id = make_user(balance=amount + 100, name="rich")
    hold = place(user_id, amount)
    page = f"/users/{user_id}"
    maker = login("operator", "mia")
    response = maker.htmx("POST", f"{page}/holds/{hold.id}/release", release_form(hold.id))
    assert response.status_code == 200
    request_id = int(re.search(r"Sent for approval \(request #(\d+)\)\.", response.text).group(1))
    assert f"The release of hold #{hold.id} ({amount:,} GOLD) waits" in response.text
    assert status_of(hold.id) == "open" and gold_of(user_id) == 100
    assert request_row(request_id).hold_id == hold.id

    article = hold_article(maker.get(page).text, hold.id)
    assert f'<a href="/approvals/{request_id}">request #{request_id}</a>' in article
    assert "<form" not in article  # no second request while this one waits

    checker = login("operator", "chad", can_approve=True)
    queue = checker.get("/approvals").text
    assert (f'Release</span> of hold <a href="{page}?asset=GOLD#hold-{hold.id}">#{hold.id}</a>'
            in queue)
    response = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Checked"})
    assert response.status_code == 303
    assert status_of(hold.id) == "voided" and gold_of(user_id) == amount + 100
    transaction_id = request_row(request_id).transaction_id
    assert (f"Request #{request_id} approved: Release of hold #{hold.id} ({amount:,} GOLD) "
            f"recorded as transaction #{transaction_id}.") in checker.get(f"/approvals/{request_id}").text


def test_the_request_page_of_a_release_shows_the_hold_as_it_is_now(login, customer):
    hold = place(customer.id, 30)
    controls.set_policy("GOLD", approval_threshold=10, operator_daily_limit=50_000)
    operator = login("operator", "mia")
    response = operator.post(release_path(customer, hold.id), release_form(hold.id))
    assert response.status_code == 303
    db.session.rollback()
    request_id = queries.list_requests("pending").items[0].id
    holds.capture(hold.id, "shop-1:capture")
    page = operator.get(f"/approvals/{request_id}").text
    assert f'of hold <a href="{customer.page}?asset=GOLD#hold-{hold.id}">#{hold.id}</a>' in page
    assert '<span class="status hold-captured">captured</span>' in page

    checker = login("operator", "chad", can_approve=True)
    refused = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Checked"})
    assert refused.status_code == 409
    assert f"hold #{hold.id} was captured meanwhile. Nothing moved." in refused.text
    assert gold_of(customer.id) == OPENING - 30


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("became, message", [
    ("captured", "was captured: its amount went to revenue, so it cannot be released"),
    ("voided", "was already released: its amount is back in the wallet"),
    ("expired", "has expired: its amount is available in the wallet again"),
])
def test_releasing_a_hold_no_longer_open_is_refused_with_what_it_became(login, customer,
                                                                       became, message):
    operator = login("operator")  # first: a login on a busy box may take longer than a second
    hold = place(customer.id, 30, seconds=1 if became == "expired" else 600)
    expires = time.monotonic() + 1  # no earlier than the hold's own expiry
    page = operator.get(customer.page).text
    assert f'id="hold-{hold.id}"' in page
    if became == "captured":
        holds.capture(hold.id, "shop-1:capture")
    elif became == "voided":
        holds.void(hold.id, "shop-1:void")
    else:
        time.sleep(max(expires - time.monotonic(), 0) + 0.1)
    before, gold = count_transactions(), gold_of(customer.id)
    response = operator.htmx("POST", release_path(customer, hold.id), release_form(hold.id))
    assert response.status_code == 422
    article = hold_article(response.text, hold.id)
    assert f"Hold #{hold.id} {message}. Nothing moved." in article
    assert "<form" not in article
    assert count_transactions() == before and gold_of(customer.id) == gold

    plain = operator.post(release_path(customer, hold.id),
                          release_form(hold.id, reference="web-release-2"))
    assert plain.status_code == 422 and "<html" in plain.text
    assert f"Hold #{hold.id} {message}. Nothing moved." in plain.text
    assert count_transactions() == before


@pytest.mark.parametrize("form, field, message", [
    ({"code": ""}, "reason_code", "Choose a reason code."),
    ({"reason": ""}, "reason", "Say why (it is recorded)."),
    ({"ticket": "not a ticket!"}, "ticket", "Enter a ticket id such as SUP-1234"),
])
def test_a_release_needs_a_reason_code_and_a_reason_inline_on_their_fields(login, customer,
                                                                          form, field,
                                                                          message):
    hold = place(customer.id, 30)
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", release_path(customer, hold.id),
                             release_form(hold.id, **form))
    assert response.status_code == 422
    assert error_of(response.text, f"release-{hold.id}-{field}").startswith(message)
    assert "<html" not in response.text and f"Release hold #{hold.id}" in response.text
    assert status_of(hold.id) == "open" and count_transactions() == before
    plain = operator.post(release_path(customer, hold.id), release_form(hold.id, **form))
    assert plain.status_code == 422
    assert error_of(plain.text, f"release-{hold.id}-{field}").startswith(message)


# ---------------------------------------------------------------- the ledger


@pytest.mark.parametrize("settle, label", [("capture", "Captured by"),
                                           ("void", "Released by")])
def test_the_transaction_page_links_a_hold_and_its_capture_or_release(login, customer, settle,
                                                                     label):
    hold = place(customer.id, 30)
    if settle == "capture":
        step = holds.capture(hold.id, "shop-1:capture", 20)
    else:
        step = holds.void(hold.id, "shop-1:void")
    settled_id = step.receipt.id
    viewer = login("viewer")
    placed = viewer.get(f"/ledger/{hold.hold_transaction_id}").text
    assert f'id="hold-title">Hold #{hold.id} <span class="status hold-{step.hold.status}">' in placed
    assert f'<dt>{label}</dt><dd><a href="/ledger/{settled_id}">#{settled_id}</a>' in placed
    assert "<dt>Placed by</dt><dd>this transaction" in placed
    settled = viewer.get(f"/ledger/{settled_id}").text
    assert (f'<dt>Placed by</dt><dd><a href="/ledger/{hold.hold_transaction_id}">'
            f'#{hold.hold_transaction_id}</a>') in settled
    assert f"<dt>{label}</dt><dd>this transaction" in settled
    captured = '<span class="money">20&nbsp;' if settle == "capture" else "—</dd>"
    assert f"<dt>Captured</dt><dd>{captured}" in settled
    assert f'href="{customer.page}?asset=GOLD">carla</a>' in settled


def test_the_transaction_page_of_an_open_hold_says_it_is_not_settled(login, customer):
    hold = place(customer.id, 30)
    page = login("viewer").get(f"/ledger/{hold.hold_transaction_id}").text
    assert '<span class="status hold-open">open</span>' in page
    assert "Not yet: open until captured, released or expired." in page
    assert 'id="hold"' not in login("viewer", "vic").get(f"/ledger/{customer.opening_id}").text
