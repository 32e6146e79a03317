"""Every user-supplied string is escaped: names, emails, descriptions, references, search terms."""
from wallet_web import accounts, ledger

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def assert_escaped(html: str) -> None:
    assert SCRIPT not in html
    assert ESCAPED in html


def test_a_script_in_a_username_and_description_is_shown_as_text(login):
    user_id = accounts.create_user(SCRIPT, "x@example.test")
    topup = ledger.topup(user_id, "GOLD", 5, f"ref-{SCRIPT}", description=SCRIPT)
    viewer = login("viewer")
    for path in (f"/users/{user_id}", "/ledger", f"/ledger/{topup.id}", "/"):
        assert_escaped(viewer.get(path).text)
    assert_escaped(viewer.htmx("GET", "/users?q=%3Cscript").text)


def test_a_script_in_a_reason_is_escaped_in_the_returned_fragment(login, customer):
    operator = login("operator")
    response = operator.htmx("POST", f"{customer.page}/topup", {
        "topup-asset": "GOLD", "topup-amount": "1", "topup-reason": SCRIPT,
        "topup-reference_id": "web-escape"})
    assert response.status_code == 200
    assert_escaped(response.text)


def test_a_script_in_a_search_term_and_filter_is_escaped(login):
    viewer = login("viewer")
    assert_escaped(viewer.htmx("GET", "/users?q=" + SCRIPT).text)
    assert_escaped(viewer.get("/ledger?reference_id=" + SCRIPT).text)


def test_a_script_in_an_api_key_name_is_escaped(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": SCRIPT, "scope": "read"})
    assert_escaped(response.text)
