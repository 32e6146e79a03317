"""Every user-supplied string is escaped: names, emails, descriptions, references, search terms,
tickets and the requests waiting for approval."""
import re

from wallet_web import accounts, controls, ledger

from .conftest import REASON_CODE, threshold

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
        "topup-reason_code": REASON_CODE, "topup-reference_id": "web-escape"})
    assert response.status_code == 200
    assert_escaped(response.text)


TICKET = 'https://tickets.example/browse/SUP-1?q="><script>alert(1)</script>&x=<b>'


def test_a_web_address_ticket_is_a_link_with_its_text_and_address_escaped(login, customer):
    assert controls.ticket_link(TICKET) == TICKET  # a web address: shown as a link
    operator = login("operator")
    response = operator.htmx("POST", f"{customer.page}/topup", {
        "topup-asset": "GOLD", "topup-amount": str(threshold()), "topup-reason": SCRIPT,
        "topup-reason_code": REASON_CODE, "topup-ticket": TICKET, "topup-reference_id": "web-tk"})
    request_id = re.search(r"request #(\d+)", response.text).group(1)
    escaped = ('https://tickets.example/browse/SUP-1?q=&#34;&gt;&lt;script&gt;alert(1)'
               '&lt;/script&gt;&amp;x=&lt;b&gt;')
    link = (f'<a class="ticket" href="{escaped}" rel="noopener noreferrer" target="_blank">'
            f'{escaped}</a>')
    for path in (f"/approvals/{request_id}", "/approvals"):
        page = operator.get(path).text
        assert link in page, path
        assert_escaped(page)
        assert "<b>" not in page


def test_a_ticket_that_is_an_id_is_text_not_a_link(login, customer):
    operator = login("operator")
    operator.htmx("POST", f"{customer.page}/topup", {
        "topup-asset": "GOLD", "topup-amount": "5", "topup-reason": "Goodwill",
        "topup-reason_code": REASON_CODE, "topup-ticket": "SUP-77", "topup-reference_id": "web-id"})
    page = operator.get("/ledger?ticket=SUP-77").text
    assert '<span class="ticket mono">SUP-77</span>' in page and 'href="SUP-77"' not in page


def test_a_script_in_a_search_term_and_filter_is_escaped(login):
    viewer = login("viewer")
    assert_escaped(viewer.htmx("GET", "/users?q=" + SCRIPT).text)
    assert_escaped(viewer.get("/ledger?reference_id=" + SCRIPT).text)


def test_a_script_in_an_api_key_name_is_escaped(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": SCRIPT, "scope": "read"})
    assert_escaped(response.text)
