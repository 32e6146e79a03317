"""The accounts lifecycle on the dashboard: the users list, a new user, freeze / unfreeze /
close with their history, and transfers between users (Flask test client, real PostgreSQL)."""
import re

import pytest

from wallet_web import accounts, queries
from wallet_web.extensions import db
from wallet_web.models import StatusChange, Transaction, User

from .actions import changed_nothing_but_refused_requests, snapshot
from .conftest import REASON_CODE, request_row, threshold

REASON = "Chargeback under review"


def fresh(user_id: int) -> User:
    db.session.rollback()  # read what the requests committed
    return queries.get_user(user_id)


def gold(user_id: int) -> int:
    db.session.rollback()
    return next(a.balance for a in queries.user_balances(user_id)
                if a.kind == "wallet" and a.asset_code == "GOLD")


def count(model) -> int:
    db.session.rollback()
    return db.session.query(model).count()


def error_of(html: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">([^<]+)<', html)
    assert match, f"no error shown for {field_id}"
    return match.group(1)


def status_change(action: str, reason: str = REASON, confirm: bool = True) -> dict:
    form = {f"{action}-reason": reason}
    if confirm:
        form[f"{action}-confirm"] = "y"
    return form


def transfer(to_user_id=None, amount="30", reason="Split the bill", reference="web-transfer-1",
             to=None, asset="GOLD") -> dict:
    form = {"transfer-asset": asset, "transfer-amount": amount, "transfer-reason": reason,
            "transfer-reason_code": REASON_CODE, "transfer-reference_id": reference}
    if to_user_id is not None:
        form["transfer-to_user_id"] = str(to_user_id)
    if to is not None:
        form["transfer-to"] = to
    return form


def freeze(user_id: int) -> None:
    accounts.change_status(user_id, "freeze", "Set up by the test")


def names_in_order(html: str) -> list[str]:
    return re.findall(r'<tr data-user="\d+">\s*<td><a href="/users/\d+">([^<]+)</a>', html)


# ---------------------------------------------------------------- the users list


def test_the_users_page_lists_every_user_newest_first_without_a_search(login, make_user):
    for name in ("ann", "ben", "cy"):
        make_user(name=name)
    page = login("viewer").get("/users")
    assert page.status_code == 200
    listed = names_in_order(page.text)
    assert listed[:3] == ["cy", "ben", "ann"]
    assert "system" not in listed  # the house accounts' owner is no player
    assert '<span class="status status-active">active</span>' in page.text


def test_the_list_filters_by_status(login, make_user):
    make_user(name="kept")
    cold = make_user(name="cold")
    freeze(cold)
    viewer = login("viewer")
    assert names_in_order(viewer.get("/users?status=frozen").text) == ["cold"]
    active = names_in_order(viewer.get("/users?status=active").text)
    assert "kept" in active and "cold" not in active


def test_the_list_searches_by_a_prefix_and_keeps_the_filter_in_the_form(login, make_user):
    make_user(name="pat-1"), make_user(name="pat-2"), make_user(name="quin")
    page = login("viewer").get("/users?q=pat").text
    assert names_in_order(page) == ["pat-2", "pat-1"]
    assert 'name="q" placeholder' in page and 'value="pat"' in page


def test_the_list_loads_more_with_a_keyset_cursor_keeping_the_filters(login):
    accounts.create_users_bulk([(f"many-{n:02}", f"many-{n:02}@example.test") for n in range(30)])
    viewer = login("viewer")
    first = viewer.get("/users?q=many").text
    assert names_in_order(first) == [f"many-{n:02}" for n in range(29, 4, -1)]  # 25 newest
    more = re.search(r'hx-get="(/users\?[^"]*cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert "q=many" in more and "rows=1" in more
    rows = viewer.htmx("GET", more).text
    assert "<table" not in rows and "Load more" not in rows
    assert re.findall(r'<a href="/users/\d+">([^<]+)</a>', rows) == [
        f"many-{n:02}" for n in range(4, -1, -1)]


def test_an_unknown_status_filter_is_an_inline_error(login):
    page = login("viewer").get("/users?status=asleep")
    assert page.status_code == 422 and "Not a valid choice" in error_of(page.text, "status")
    assert "Fix the filters above" in page.text


def test_the_lookup_as_you_type_shows_the_status(login, make_user):
    freeze(make_user(name="icy"))
    response = login("viewer").htmx("GET", "/users?q=icy")
    assert "<html" not in response.text
    assert re.search(r'>icy</a>.*status-frozen">frozen<', response.text, re.DOTALL)


# ---------------------------------------------------------------- a new user


def new_user(username="nora", email="nora@example.com", external_id="") -> dict:
    return {"username": username, "email": email, "external_id": external_id}


def test_the_new_user_page_has_its_form_with_a_csrf_token(login):
    page = login("operator").get("/users/new")
    assert page.status_code == 200
    assert re.search(r'name="csrf_token" type="hidden" value="[^"]+"', page.text)
    for name in ("username", "email", "external_id"):
        assert f'name="{name}"' in page.text


def test_the_users_page_links_to_a_new_user_for_operators_only(login):
    assert "New user" in login("operator").get("/users").text
    assert "New user" not in login("viewer", "vic").get("/users").text


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_an_operator_or_admin_creates_a_user_and_lands_on_its_page(login, role):
    browser = login(role)
    response = browser.post("/users/new", new_user(external_id="crm:42"))
    assert response.status_code == 303
    user_id = int(re.fullmatch(r"/users/(\d+)", response.headers["Location"]).group(1))
    created = fresh(user_id)
    assert (created.username, created.email, created.external_id, created.status) == (
        "nora", "nora@example.com", "crm:42", "active")
    assert {a.asset_code for a in queries.user_balances(user_id)} == {"GOLD", "DIAMOND", "LOYALTY"}
    page = browser.get(response.headers["Location"]).text
    assert "User nora created with one wallet per asset." in page and "crm:42" in page


def test_the_same_new_user_sent_again_finds_that_user_and_creates_nothing(login):
    operator = login("operator")
    first = operator.post("/users/new", new_user())
    users = count(User)
    again = operator.post("/users/new", new_user())
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert count(User) == users
    assert "already exists with these details" in operator.get(again.headers["Location"]).text


@pytest.mark.parametrize("sent, taken", [
    (new_user(email="other@example.com"), ["username"]),
    (new_user(username="nina"), ["email"]),
])
def test_a_new_user_clashing_with_another_is_an_inline_message(login, sent, taken):
    operator = login("operator")
    operator.post("/users/new", new_user())
    before = snapshot()
    response = operator.post("/users/new", sent)
    assert response.status_code == 422
    assert "already exists with other details: nothing was created" in response.text
    for name in taken:
        assert error_of(response.text, name) == "Already registered for another user."
    assert snapshot() == before


@pytest.mark.parametrize("sent, field, message", [
    (new_user(username=""), "username", "Enter a username."),
    (new_user(username="no spaces"), "username", "1 to 64 letters"),
    (new_user(username="x" * 65), "username", "1 to 64 letters"),
    (new_user(email=""), "email", "Enter an email address."),
    (new_user(email="not-an-address"), "email", "must have an @-sign"),
    (new_user(external_id="#bad"), "external_id", "1 to 64 letters"),
])
def test_an_invalid_new_user_is_an_inline_error_and_creates_nothing(login, sent, field, message):
    operator = login("operator")
    before = snapshot()
    response = operator.post("/users/new", sent)
    assert response.status_code == 422
    assert message in error_of(response.text, field)
    assert 'aria-invalid="true"' in response.text
    assert snapshot() == before


def test_a_viewer_may_not_create_a_user(login):
    viewer = login("viewer")
    assert viewer.get("/users/new").status_code == 403
    before = snapshot()
    assert viewer.post("/users/new", new_user()).status_code == 403
    assert snapshot() == before


def test_a_new_user_without_the_csrf_token_is_refused(login):
    operator = login("operator")
    before = snapshot()
    response = operator.post("/users/new", new_user(), csrf=False)
    assert response.status_code == 400 and snapshot() == before


# ---------------------------------------------------------------- status


def test_an_operator_freezes_a_user_with_a_reason_recorded_and_shown(login, make_user):
    user_id = make_user(name="fay")
    operator = login("operator", "olga")
    response = operator.post(f"/users/{user_id}/freeze", status_change("freeze"))
    assert response.status_code == 303 and response.headers["Location"] == f"/users/{user_id}"
    assert fresh(user_id).status == "frozen"
    change = db.session.query(StatusChange).filter_by(user_id=user_id).one()
    assert (change.previous_status, change.status, change.reason, change.actor) == (
        "active", "frozen", REASON, "operator:olga")
    page = operator.get(f"/users/{user_id}").text
    assert "User fay frozen: debits are refused" in page
    assert re.search(r"<h1>fay <span class=\"status status-frozen\">frozen</span></h1>", page)
    history = page[page.index('class="status-history"'):]
    assert REASON in history and "operator:olga" in history


def test_an_operator_unfreezes_a_frozen_user(login, make_user):
    user_id = make_user(name="thaw")
    freeze(user_id)
    operator = login("operator")
    assert 'id="form-unfreeze"' in operator.get(f"/users/{user_id}").text
    response = operator.post(f"/users/{user_id}/unfreeze", status_change("unfreeze"))
    assert response.status_code == 303 and fresh(user_id).status == "active"
    assert count(StatusChange) == 2


@pytest.mark.parametrize("form, field, message", [
    (status_change("freeze", confirm=False), "freeze-confirm", "Tick to confirm."),
    (status_change("freeze", reason="  "), "freeze-reason", "Say why (it is recorded)."),
    (status_change("freeze", reason="x" * 501), "freeze-reason", "longer than 500"),
])
def test_a_status_change_needs_a_reason_and_a_confirmation(login, make_user, form, field,
                                                           message):
    user_id = make_user()
    operator = login("operator")
    before = snapshot()
    response = operator.post(f"/users/{user_id}/freeze", form)
    assert response.status_code == 422 and message in error_of(response.text, field)
    assert snapshot() == before


def test_freezing_a_frozen_user_changes_nothing_and_says_so(login, make_user):
    user_id = make_user(name="twice")
    freeze(user_id)
    operator = login("operator")
    response = operator.post(f"/users/{user_id}/freeze", status_change("freeze"))
    assert response.status_code == 303
    assert "User twice was already frozen: nothing changed." in operator.get(f"/users/{user_id}").text
    assert count(StatusChange) == 1


def test_an_operator_may_not_close_a_user_and_is_not_offered_to(login, make_user):
    user_id = make_user()
    operator = login("operator")
    page = operator.get(f"/users/{user_id}").text
    assert 'id="form-freeze"' in page and 'id="form-close"' not in page
    before = snapshot()
    response = operator.post(f"/users/{user_id}/close", status_change("close"))
    assert response.status_code == 403 and "Not allowed" in response.text
    assert snapshot() == before


def test_a_viewer_may_not_change_a_status_and_sees_no_status_form(login, make_user):
    user_id = make_user()
    viewer = login("viewer")
    page = viewer.get(f"/users/{user_id}").text
    assert 'class="status-change"' not in page and "Status history" in page
    before = snapshot()
    for action in ("freeze", "close"):
        response = viewer.post(f"/users/{user_id}/{action}", status_change(action))
        assert response.status_code == 403
    assert snapshot() == before


def test_an_admin_closes_an_empty_user_and_its_page_offers_no_movement(login, make_user):
    user_id = make_user(name="gone")
    admin = login("admin")
    assert 'id="form-close"' in admin.get(f"/users/{user_id}").text
    response = admin.post(f"/users/{user_id}/close", status_change("close"))
    assert response.status_code == 303 and fresh(user_id).status == "closed"
    page = admin.get(f"/users/{user_id}").text
    assert "User gone closed" in page
    assert 'id="form-topup"' not in page and 'id="form-transfer"' not in page
    assert 'class="status-change"' not in page


def test_closing_a_user_that_holds_value_is_refused_inline(login, make_user):
    user_id = make_user(balance=75)
    admin = login("admin")
    before = snapshot()
    response = admin.post(f"/users/{user_id}/close", status_change("close"))
    assert response.status_code == 422
    assert "Balances must be zero to close: this user still holds 75 GOLD." in response.text
    assert 'id="form-close"' in response.text and snapshot() == before


def test_a_closed_user_cannot_change_again(login, make_user):
    user_id = make_user()
    accounts.change_status(user_id, "close", "Set up by the test")
    admin = login("admin")
    before = snapshot()
    response = admin.post(f"/users/{user_id}/unfreeze", status_change("unfreeze"))
    assert response.status_code == 422
    assert "This user is closed: its status cannot change." in response.text
    assert snapshot() == before


def test_a_status_change_without_the_csrf_token_is_refused(login, make_user):
    user_id = make_user()
    operator = login("operator")
    before = snapshot()
    response = operator.post(f"/users/{user_id}/freeze", status_change("freeze"), csrf=False)
    assert response.status_code == 400 and snapshot() == before


def test_a_frozen_user_takes_credits_but_a_spend_is_refused_inline(login, make_user):
    user_id = make_user(balance=100)
    freeze(user_id)
    operator = login("operator")
    refused = operator.htmx("POST", f"/users/{user_id}/spend", {
        "spend-asset": "GOLD", "spend-amount": "10", "spend-reason": "Shop",
        "spend-reason_code": REASON_CODE, "spend-reference_id": "web-frozen-spend"})
    assert refused.status_code == 422 and "GOLD wallet is frozen: nothing was moved" in refused.text
    assert gold(user_id) == 100
    landed = operator.htmx("POST", f"/users/{user_id}/topup", {
        "topup-asset": "GOLD", "topup-amount": "10", "topup-reason": "Refund",
        "topup-reason_code": REASON_CODE, "topup-reference_id": "web-frozen-topup"})
    assert landed.status_code == 200 and gold(user_id) == 110


# ---------------------------------------------------------------- transfers


@pytest.fixture
def pair(make_user):
    """(sender with 100 GOLD, recipient with nothing)."""
    return make_user(balance=100, name="sam"), make_user(name="rita")


def test_an_htmx_transfer_returns_the_confirmation_and_fresh_balances(login, pair):
    sender, recipient = pair
    operator = login("operator", "olga")
    response = operator.htmx("POST", f"/users/{sender}/transfer", transfer(recipient))
    assert response.status_code == 200, response.text
    assert "Transfer of 30 GOLD to rita recorded as transaction #" in response.text
    assert "New GOLD balance: 70." in response.text
    assert 'id="balances" hx-swap-oob="true"' in response.text
    assert 'name="transfer-to_user_id"' not in response.text  # a fresh form: pick again
    assert (gold(sender), gold(recipient)) == (70, 30)
    tx = queries.find_transaction_by_reference("web-transfer-1")
    assert (tx.kind, tx.actor, tx.description) == ("transfer", "operator:olga", "Split the bill")


def test_a_plain_transfer_post_redirects_with_a_confirmation(login, pair):
    sender, recipient = pair
    operator = login("operator")
    response = operator.post(f"/users/{sender}/transfer", transfer(recipient, amount="1,000",
                                                                   reason="Too much"))
    assert response.status_code == 422  # 1,000 > 100: the whole page, with the error inline
    assert "<html" in response.text and "Not enough GOLD: the wallet holds 100." in response.text
    fresh = re.search(r'name="transfer-reference_id" type="hidden" value="([^"]+)"',
                      response.text).group(1)  # the refused request keeps the one sent
    response = operator.post(f"/users/{sender}/transfer", transfer(recipient, reference=fresh))
    assert response.status_code == 303
    assert response.headers["Location"] == f"/users/{sender}?asset=GOLD"
    assert "Transfer of 30 GOLD to rita recorded" in operator.get(response.headers["Location"]).text


def test_without_javascript_the_recipient_may_be_typed_as_an_id_or_a_username(login, pair):
    sender, recipient = pair
    operator = login("operator")
    by_name = operator.post(f"/users/{sender}/transfer", transfer(to="RITA", reference="web-a"))
    by_id = operator.post(f"/users/{sender}/transfer", transfer(to=str(recipient), reference="web-b"))
    assert by_name.status_code == by_id.status_code == 303
    assert gold(recipient) == 60


def test_the_same_transfer_form_sent_twice_moves_value_once(login, pair):
    sender, recipient = pair
    operator = login("operator")
    before = count(Transaction)
    first = operator.htmx("POST", f"/users/{sender}/transfer", transfer(recipient))
    second = operator.htmx("POST", f"/users/{sender}/transfer", transfer(recipient))
    assert first.status_code == second.status_code == 200
    assert "recorded once" in second.text and "recorded once" not in first.text
    assert count(Transaction) == before + 1 and (gold(sender), gold(recipient)) == (70, 30)


@pytest.mark.parametrize("case, message", [
    ("insufficient", "Not enough GOLD: the wallet holds 100."),
    ("frozen sender", "wallet is frozen: nothing can be sent from it"),
    ("closed recipient", "rita is closed: the transfer cannot land"),
    ("self", "A user cannot transfer to themselves"),
    ("unknown user", "No user #"),
    ("nobody", "Choose who receives the transfer."),
    ("unmatched name", "No user is “nobody-here”"),
    ("system user", "No user is “system”"),
])
def test_a_refused_transfer_is_an_inline_error_and_changes_nothing(login, pair, case, message):
    sender, recipient = pair
    form = {
        "insufficient": transfer(recipient, amount="101"),
        "frozen sender": transfer(recipient),
        "closed recipient": transfer(recipient),
        "self": transfer(sender),
        "unknown user": transfer(10**9),
        "nobody": transfer(),
        "unmatched name": transfer(to="nobody-here"),
        "system user": transfer(to="system"),
    }[case]
    if case == "frozen sender":
        freeze(sender)
    if case == "closed recipient":
        accounts.change_status(recipient, "close", "Set up by the test")
    operator = login("operator")
    before = snapshot()
    response = operator.htmx("POST", f"/users/{sender}/transfer", form)
    assert response.status_code == 422 and message in response.text
    assert "<html" not in response.text and 'id="form-transfer"' in response.text
    assert re.search(r'name="transfer-reference_id" type="hidden" value="web-', response.text)
    assert changed_nothing_but_refused_requests(before)


def test_a_transfer_to_a_frozen_user_lands(login, pair):
    sender, recipient = pair
    freeze(recipient)
    response = login("operator").htmx("POST", f"/users/{sender}/transfer", transfer(recipient))
    assert response.status_code == 200 and gold(recipient) == 30


def test_a_refused_transfer_keeps_the_chosen_recipient(login, pair):
    sender, recipient = pair
    response = login("operator").htmx("POST", f"/users/{sender}/transfer",
                                      transfer(recipient, amount=""))
    assert response.status_code == 422 and "Enter an amount." in response.text
    assert f'name="transfer-to_user_id" type="hidden" value="{recipient}"' in response.text


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_a_transfer_at_the_approval_threshold_waits_for_another_operator(login, make_user, role):
    amount = threshold()
    sender, recipient = make_user(balance=amount, name="rich"), make_user(name="heir")
    response = login(role).htmx("POST", f"/users/{sender}/transfer",
                                transfer(recipient, amount=str(amount)))
    assert response.status_code == 200
    request_id = int(re.search(r"Sent for approval \(request #(\d+)\)\. Transfer of "
                               rf"{amount:,} GOLD to heir waits", response.text).group(1))
    assert (gold(sender), gold(recipient)) == (amount, 0)
    row = request_row(request_id)
    assert (row.status, row.user_id, row.to_user_id) == ("pending", sender, recipient)
    checker = login("operator", "carol", can_approve=True)
    checker.get(f"/approvals/{request_id}")
    approved = checker.post(f"/approvals/{request_id}/approve", {"approve-reason": "Verified"})
    assert approved.status_code == 303
    assert (gold(sender), gold(recipient)) == (0, amount)


def test_a_viewer_may_not_transfer_and_sees_no_transfer_form(login, pair):
    sender, recipient = pair
    viewer = login("viewer")
    assert 'id="form-transfer"' not in viewer.get(f"/users/{sender}").text
    before = snapshot()
    assert viewer.post(f"/users/{sender}/transfer", transfer(recipient)).status_code == 403
    assert snapshot() == before


def test_a_transfer_without_the_csrf_token_is_refused(login, pair):
    sender, recipient = pair
    operator = login("operator")
    before = snapshot()
    response = operator.post(f"/users/{sender}/transfer", transfer(recipient), csrf=False)
    assert response.status_code == 400 and snapshot() == before


def test_the_recipient_lookup_lists_other_users_and_choosing_one_fills_the_form(login, pair):
    sender, recipient = pair
    operator = login("operator")
    page = operator.get(f"/users/{sender}").text
    assert re.search(r'name="transfer-csrf_token" type="hidden" value="[^"]+"', page)
    assert f'hx-get="/users/{sender}/recipients"' in page
    results = operator.htmx("GET", f"/users/{sender}/recipients?transfer-to=r").text
    assert f'hx-get="/users/{sender}/recipient?pick={recipient}"' in results
    assert f"pick={sender}" not in operator.htmx(
        "GET", f"/users/{sender}/recipients?transfer-to=s").text  # not the sender itself
    chosen = operator.htmx("GET", f"/users/{sender}/recipient?pick={recipient}").text
    assert f'name="transfer-to_user_id" type="hidden" value="{recipient}"' in chosen
    assert ">rita</a>" in chosen and "Change recipient" in chosen
    again = operator.htmx("GET", f"/users/{sender}/recipient").text
    assert 'name="transfer-to"' in again and "transfer-to_user_id" not in again


def test_choosing_the_sender_as_recipient_is_refused_in_the_picker(login, pair):
    sender, _ = pair
    chosen = login("operator").htmx("GET", f"/users/{sender}/recipient?pick={sender}").text
    assert "transfer-to_user_id" not in chosen and "cannot receive this transfer" in chosen
