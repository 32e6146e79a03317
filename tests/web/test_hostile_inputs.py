"""Hostile dashboard input is a clear 4xx that changes nothing: NUL characters, forged cursors,
query arguments aimed at url_for, digits that are not ASCII. And /admin leads somewhere."""
import base64
import csv
import io
import re
from urllib.parse import urlencode

import pytest

from wallet_web import accounts, api_keys, operators, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction

from .conftest import Browser

pytestmark = pytest.mark.both_backends
NUL = "a\x00b"
NUL_MESSAGE = "NUL character"


def count_transactions() -> int:
    db.session.rollback()
    return db.session.query(Transaction).count()


def inline_error(html: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">([^<]+)<', html)
    assert match, f"no inline error for {field_id}"
    return match.group(1)


def movement(**changes) -> dict:
    return {"topup-asset": "GOLD", "topup-amount": "5", "topup-reason": "Goodwill",
            "topup-reason_code": "goodwill", "topup-reference_id": "web-hostile", **changes}


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ---------------------------------------------------------------- NUL characters


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_nul_in_the_login_form_is_an_inline_error(anonymous, make_operator, field):
    make_operator("viewer", "nul")
    anonymous.get("/login")
    values = {"username": "nul", "password": "correct horse battery", field: NUL}
    response = anonymous.post("/login", values)
    assert response.status_code == 422
    assert NUL_MESSAGE in inline_error(response.text, field)
    assert anonymous.get("/").status_code == 302  # not logged in


@pytest.mark.parametrize("field", ["topup-reason", "topup-reference_id", "topup-reason_code",
                                   "topup-ticket"])
def test_a_nul_in_a_movement_form_is_refused_and_moves_nothing(login, customer, field):
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", f"{customer.page}/topup", movement(**{field: NUL}))
    assert response.status_code == 422 and NUL_MESSAGE in response.text
    assert count_transactions() == before


def test_a_nul_in_a_reversal_reason_is_an_inline_error(login, customer):
    admin = login("admin")
    opening = f"/ledger/{customer.opening_id}"
    admin.get(opening)
    before = count_transactions()
    response = admin.post(f"{opening}/reversal", {"reason": NUL, "reason_code": "goodwill",
                                                  "confirm": "y", "reference_id": "web-nul"})
    assert response.status_code == 422
    assert NUL_MESSAGE in inline_error(response.text, "reason")
    assert count_transactions() == before


def test_a_nul_in_an_api_key_name_is_an_inline_error(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": NUL, "scope": "read"})
    assert response.status_code == 422 and NUL_MESSAGE in inline_error(response.text, "name")
    assert api_keys.list_keys() == []


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_nul_in_an_operator_form_is_an_inline_error(login, field):
    admin = login("admin")
    admin.get("/admin/operators")
    values = {"username": "newop", "password": "long enough pass", "role": "viewer", field: NUL}
    response = admin.post("/admin/operators", values)
    assert response.status_code == 422 and NUL_MESSAGE in inline_error(response.text, field)
    assert [op.username for op in operators.list_operators()] == ["admin"]


@pytest.mark.parametrize("field", ["reference_id", "ticket", "reason_code"])
def test_a_nul_in_a_ledger_filter_is_an_inline_error(login, field):
    viewer = login("viewer")
    response = viewer.get(f"/ledger?{field}=a%00b")
    assert response.status_code == 422
    assert NUL_MESSAGE in inline_error(response.text, field)
    partial = viewer.htmx("GET", f"/ledger?{field}=a%00b")
    assert partial.status_code == 422 and f'id="{field}-error"' in partial.text


def test_a_nul_in_the_approvals_filter_is_an_inline_error(login):
    operator = login("operator")
    response = operator.get("/approvals?status=a%00b")
    assert response.status_code == 422 and NUL_MESSAGE in inline_error(response.text, "status")


def test_a_nul_in_a_decision_reason_is_an_inline_error_and_decides_nothing(login, customer,
                                                                          make_request):
    request_id = make_request(customer.id)
    admin = login("admin")
    admin.get(f"/approvals/{request_id}")
    response = admin.post(f"/approvals/{request_id}/approve", {"approve-reason": NUL})
    assert response.status_code == 422
    assert NUL_MESSAGE in inline_error(response.text, "approve-reason")
    db.session.rollback()
    assert queries.get_request(request_id).status == "pending"


def test_a_nul_in_a_csv_filter_goes_back_to_the_form_with_the_error(login):
    viewer = login("viewer")
    response = viewer.get("/ledger/transactions.csv?reference_id=a%00b")
    assert response.status_code == 302 and response.mimetype != "text/csv"
    form = viewer.get(response.headers["Location"])
    assert form.status_code == 422 and 'id="reference_id-error"' in form.text


@pytest.mark.parametrize("path", ["/users?q=a%00b", "/users?q=%00", "{user}?asset=%00",
                                  "{user}/history?asset=GOLD&cursor=%00", "/ledger?rows=%00",
                                  "/?x%00=1"])
def test_a_nul_in_a_plain_query_argument_is_the_400_page(login, customer, path):
    path = path.format(user=customer.page)
    viewer = login("viewer")
    for response in (viewer.get(path), viewer.htmx("GET", path)):
        assert response.status_code == 400, path
        assert "Bad request" in response.text


# ---------------------------------------------------------------- cursors


BAD_CURSORS = [
    cursor_of("id:9223372036854775808"),  # bigint max + 1
    cursor_of("id:99999999999999999999999999"),
    cursor_of("id:0"),
    cursor_of("id:-1"),
    cursor_of("id:\u0661\u0662"),  # Arabic-Indic 12
    cursor_of("id:\uff11\uff12"),  # full-width 12
    cursor_of("id:\u00b2"),
    cursor_of("id: 12"),
    cursor_of("id:1") + "!!",  # decodes to id:1 if the junk is skipped
    cursor_of("id:1") + "é",
    "A" * 5000,
    "é",
    "a",
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
def test_a_forged_cursor_is_the_400_page_on_every_paginated_page(login, customer, cursor):
    operator = login("operator")  # one login: on SQLite a second one after a page is "locked"
    for path in ("/ledger", customer.page, "/approvals"):
        response = operator.get(path, query_string={"cursor": cursor})
        assert response.status_code == 400 and "cursor is not one" in response.text, path
    rows = operator.htmx("GET", f"{customer.page}/history?asset=GOLD&rows=1&cursor=" + cursor)
    assert rows.status_code == 400
    ledger_rows = operator.htmx("GET", "/ledger?rows=1&cursor=" + cursor)
    assert ledger_rows.status_code == 400
    approval_rows = operator.htmx("GET", "/approvals?status=any&rows=1&cursor=" + cursor)
    assert approval_rows.status_code == 400


def test_a_cursor_at_the_largest_id_is_a_page(login):
    viewer = login("viewer")
    response = viewer.get("/ledger", query_string={"cursor": cursor_of("id:9223372036854775807")})
    assert response.status_code == 200


# ---------------------------------------------------------------- query arguments and url_for


@pytest.mark.parametrize("query", ["user_id={other}", "_method=POST", "endpoint=x",
                                   "_external=1", "_anchor=x", "_scheme=x",
                                   "_external=1&_scheme=javascript", "values=1",
                                   "asset=GOLD&user_id={other}&_anchor=x"])
def test_the_history_link_without_htmx_keeps_only_its_own_arguments(login, customer, make_user,
                                                                    query):
    query = query.format(other=make_user())
    response = login("viewer").get(f"{customer.page}/history?{query}")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location in (customer.page, f"{customer.page}?asset=GOLD"), location


def test_the_history_link_keeps_the_asset_and_the_cursor(login, customer):
    cursor = cursor_of("id:10")
    response = login("viewer").get(f"{customer.page}/history?asset=GOLD&cursor={cursor}")
    assert response.headers["Location"] == f"{customer.page}?asset=GOLD&cursor={cursor}"


# ---------------------------------------------------------------- digits that are not ASCII


@pytest.fixture
def twelve_users(make_user):
    """Users up to id 12, so that the ids the digits below stand for (1, 2, 12) all exist."""
    while make_user() < 12:
        pass
    assert {1, 2, 12} <= set(queries.usernames({1, 2, 12}))


@pytest.mark.parametrize("term", ["\u00b2", "\u2460", "\uff11\uff12", "\u0661\u0662", "\u0967"])
def test_a_lookup_by_a_digit_that_is_not_ascii_finds_no_user_by_id(login, twelve_users, term):
    viewer = login("viewer")
    response = viewer.htmx("GET", f"/users?q={term}")
    assert response.status_code == 200 and "Nothing matches" in response.text
    assert viewer.get(f"/users?q={term}").status_code == 200
    assert '<a href="/users/12">' in viewer.htmx("GET", "/users?q=12").text


@pytest.mark.parametrize("amount", ["\uff11\uff12", "\u0661\u0662", "\u00b2", "+12", "12.0"])
def test_an_amount_in_digits_that_are_not_ascii_is_an_inline_error(login, customer, amount):
    operator = login("operator")
    before = count_transactions()
    response = operator.htmx("POST", f"{customer.page}/topup", movement(**{"topup-amount": amount}))
    assert response.status_code == 422
    assert inline_error(response.text, "topup-amount").startswith("Enter a whole number")
    assert count_transactions() == before


def test_a_user_filter_in_digits_that_are_not_ascii_is_an_inline_error(login):
    response = login("viewer").get("/ledger?user_id=\u0662")
    assert response.status_code == 422 and 'id="user_id-error"' in response.text


@pytest.mark.parametrize("path", ["/users/\uff12", "/users/\u0662", "/users/\u00b2",
                                  "/ledger/\u0664", "/users/9223372036854775808",
                                  "/users/99999999999999999999999999", "/users/0",
                                  "/users/\uff12/history"])
def test_an_id_in_the_path_that_is_not_an_ascii_bigint_is_404(login, path):
    response = login("viewer").get(path)
    assert response.status_code == 404 and "Not found" in response.text


def test_an_action_on_an_id_that_is_not_ascii_is_404_and_moves_nothing(login):
    operator = login("operator")
    before = count_transactions()
    assert operator.post("/users/\uff12/topup", movement()).status_code == 404
    assert count_transactions() == before


# ---------------------------------------------------------------- /admin


def test_admin_leads_to_the_operators_page(login):
    response = login("admin").get("/admin")
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == "/admin/operators"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_admin_is_forbidden_below_admin(login, role):
    assert login(role).get("/admin").status_code == 403


def test_admin_needs_a_login(anonymous):
    response = anonymous.get("/admin")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# ---------------------------------------------------------------- CSV cells


FORMULA_LOOKALIKES = [" =1+2", "\t=1", "\n=cmd", "\r=1", "\x0b=1", "\xa0=1", "\u3000=1",
                      "\uff1dHYPERLINK(1)", "\uff0b1", "\uff0d1", "\uff20SUM(1)", "=1", "-1"]
TEXT_COLUMNS = ("reference_id", "account", "username", "description", "actor")


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_csv_cells_a_spreadsheet_could_read_as_formulas_are_quoted(login, customer, app):
    token = api_keys.create_key("csv-writer", "write")[1]
    api, key = Browser(app), {"Authorization": f"Bearer {token}"}
    for n, text in enumerate(FORMULA_LOOKALIKES):
        user_id = accounts.create_user(f"{text}user{n}", f"csv{n}@example.test")
        response = api.request("POST", "/wallet/topup", headers=key, json={
            "user_id": user_id, "amount": 1, "reference_id": f"{text}ref{n}", "description": text})
        assert response.status_code == 200
    operator = login("operator")
    operator.get(customer.page)
    reason = operator.post(f"{customer.page}/topup", movement(**{"topup-reason": "\uff1dSUM(1)"}))
    assert reason.status_code == 303
    downloads = {
        "api": api.get("/api/v1/transactions.csv", headers=key),
        "dashboard": operator.get("/ledger/transactions.csv")}
    for source, response in downloads.items():
        rows = read_csv(response)
        for row in rows:
            for column in TEXT_COLUMNS:
                cell = row[column]
                assert not cell[:1].isspace() and cell[:1] not in "=+-@\uff1d\uff0b\uff0d\uff20", (
                    source, column, cell)
        descriptions = {row["description"] for row in rows}
        expected = {"'" + text for text in FORMULA_LOOKALIKES} | {"'\uff1dSUM(1)"}
        assert expected - descriptions == set(), source
        usernames = {row["username"] for row in rows}
        expected = {f"'{text}user{n}" for n, text in enumerate(FORMULA_LOOKALIKES)}
        assert expected - usernames == set(), source


# ---------------------------------------------------------------- chunked bodies


def post_chunked(browser, path: str, body: bytes):
    """A POST without Content-Length (Transfer-Encoding: chunked, dechunked by the server)."""
    return browser.request("POST", path, input_stream=io.BytesIO(body),
                           content_type="application/x-www-form-urlencoded",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_form_over_the_limit_is_413_and_moves_nothing(login, customer, app):
    operator = login("operator")
    operator.get(customer.page)
    form = urlencode({**movement(), "csrf_token": operator.token}).encode()
    padding = b"&pad=" + b"x" * app.config["MAX_CONTENT_LENGTH"]
    before = count_transactions()
    top_up = f"{customer.page}/topup"
    assert post_chunked(operator, top_up, form + padding).status_code == 413
    assert post_chunked(operator, top_up, padding + b"&" + form).status_code == 413
    assert count_transactions() == before


def test_a_small_chunked_form_still_works(login, customer):
    operator = login("operator")
    operator.get(customer.page)
    form = urlencode({**movement(), "csrf_token": operator.token}).encode()
    before = count_transactions()
    assert post_chunked(operator, f"{customer.page}/topup", form).status_code == 303
    assert count_transactions() == before + 1
