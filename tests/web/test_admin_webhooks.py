"""Admin: webhook endpoints at /admin/webhooks (add one and see its secret once; disable,
enable; an endpoint disabled after failing too long says why) and an endpoint's page with its
recent deliveries, any of which is sent again on request. Deliveries are written as the worker
would write them (webhook_records.py): no test here needs the worker or a receiver."""
import re
from html import unescape

import pytest
from sqlalchemy import select

from wallet_web import webhooks
from wallet_web.extensions import db
from wallet_web.models import EVENT_TYPES, AuditEvent, WebhookEndpoint

from .actions import snapshot
from .webhook_records import (
    RECEIVER_ERROR, SCRIPT, URL, add_delivery, add_endpoint, delivery, disable_after_failures,
    endpoint,
)

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NOWHERE = 10**9  # an id no test creates


def endpoints() -> list:
    db.session.rollback()  # what the requests committed
    return webhooks.list_endpoints()


def new_endpoint(**changes) -> dict:
    return {"url": URL, "event_types": ["transaction.posted", "user.created"],
            "description": "Game server", **changes}


def inline_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">([^<]+)<', page)
    assert match, f"no inline error for {field_id}"
    return unescape(match.group(1))


def checkbox(page: str, value: str) -> str:
    [tag] = re.findall(rf'<input [^>]*value="{re.escape(value)}"[^>]*>', page)
    return tag


def secret_on(html: str) -> str:
    return html.split('id="new-secret">', 1)[1].split("<", 1)[0]


@pytest.fixture
def admin(login):
    browser = login("admin")
    browser.get("/admin/webhooks")
    return browser


# ---------------------------------------------------------------- adding an endpoint


def test_the_admin_pages_link_to_the_webhooks_page(admin):
    page = admin.get("/admin/operators").text
    assert '<a href="/admin/webhooks"' in page
    assert re.search(r'href="/admin/webhooks" aria-current="page">Webhooks<',
                     admin.get("/admin/webhooks").text)


def test_the_form_offers_every_event_type_as_a_checkbox(admin):
    page = admin.get("/admin/webhooks").text
    for name in EVENT_TYPES:
        assert checkbox(page, name).startswith('<input id="event_types-')
        assert 'name="event_types" type="checkbox"' in checkbox(page, name)
        assert " checked" not in checkbox(page, name) and "required" not in checkbox(page, name)
    assert "<legend>Event types</legend>" in page


def test_an_admin_adds_an_endpoint_and_sees_its_secret_once(admin):
    response = admin.post("/admin/webhooks", new_endpoint())
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    secret = secret_on(response.text)
    assert secret.startswith("whsec_") and "shown only this once" in response.text
    [added] = endpoints()
    assert (added.url, added.event_types, added.description, added.active) == (
        URL, ["transaction.posted", "user.created"], "Game server", True)
    assert added.created_by == "operator:admin"
    assert db.session.get(WebhookEndpoint, added.id).secret == secret  # what signs deliveries
    again = admin.get("/admin/webhooks").text
    assert secret not in again and "whsec_" not in again
    assert URL in again and "Game server" in again
    assert secret not in admin.get(f"/admin/webhooks/{added.id}").text


def test_the_new_endpoint_is_listed_with_its_counts_and_no_success_yet(admin):
    endpoint_id = add_endpoint()
    add_delivery(endpoint_id, status="pending", attempts=0, last_status=None, last_error=None)
    add_delivery(endpoint_id, status="delivered", attempts=1, last_status=200, last_error=None)
    add_delivery(endpoint_id, status="failed")
    row = admin.get("/admin/webhooks").text.split(f'data-endpoint="{endpoint_id}"', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', row)] == [1, 1, 1]
    assert "never" in row and "active" in row and "Disable" in row


@pytest.mark.parametrize("changes, field, message", [
    ({"url": ""}, "url", "Enter the receiver's URL."),
    ({"url": "   "}, "url", "Enter the receiver's URL."),
    ({"event_types": []}, "event_types", "Choose at least one event type."),
    ({"event_types": ["user.deleted"]}, "event_types", "not a valid choice"),
    ({"url": "a\x00b"}, "url", "NUL character"),
    ({"description": "a\x00b"}, "description", "NUL character"),
], ids=["no url", "blank url", "no event type", "unknown event type", "nul in url",
        "nul in description"])
def test_a_form_error_is_inline_422_and_adds_nothing(admin, changes, field, message):
    before = snapshot()
    response = admin.post("/admin/webhooks", new_endpoint(**changes))
    assert response.status_code == 422
    assert message in inline_error(response.text, field)
    assert "whsec_" not in response.text
    assert snapshot() == before


@pytest.mark.parametrize("changes, field, message", [
    ({"url": "not a web address"}, "url", "Printable ASCII only, no spaces"),
    ({"url": "ftp://hooks.example.com/wallet"}, "url", "Must start with http:// or https://"),
    ({"url": "https://" + "a" * 2048 + ".example.com/"}, "url", "At most 2048 characters."),
    ({"url": "https://user:pass@hooks.example.com/"}, "url", "No user:password@"),
    ({"description": "d" * 201}, "description", "At most 200 characters."),
    ({"description": "two\nlines"}, "description", "Printable text on one line."),
], ids=["not a url", "not http", "too long url", "credentials", "too long description",
        "two lines"])
def test_a_refusal_of_the_service_is_a_sentence_next_to_its_field_and_adds_nothing(
        admin, changes, field, message):
    before = snapshot()
    response = admin.post("/admin/webhooks", new_endpoint(**changes))
    assert response.status_code == 422
    assert inline_error(response.text, field).startswith(message)
    assert f'aria-describedby="{field}-error"' in response.text and "whsec_" not in response.text
    assert snapshot() == before


def test_the_form_keeps_what_was_entered_after_a_refusal(admin):
    response = admin.post("/admin/webhooks", new_endpoint(url="", description="Kept"))
    assert 'value="Kept"' in response.text
    assert [" checked" in checkbox(response.text, name) for name in EVENT_TYPES] == [
        name in ("transaction.posted", "user.created") for name in EVENT_TYPES]


def test_adding_without_the_csrf_token_is_refused_and_adds_nothing(admin):
    before = snapshot()
    response = admin.post("/admin/webhooks", new_endpoint(), csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert snapshot() == before


# ---------------------------------------------------------------- disabled and enabled


def test_an_endpoint_disabled_after_failing_says_why_and_since_when(admin):
    endpoint_id = add_endpoint()
    disable_after_failures(endpoint_id, "Failing since 2024-05-01: HTTP 500 from the receiver")
    disabled_at = endpoint(endpoint_id).disabled_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    for path in ("/admin/webhooks", f"/admin/webhooks/{endpoint_id}"):
        page = admin.get(path).text
        assert "disabled</span>" in page
        assert (f'Disabled on <time datetime="{disabled_at[:10]}T{disabled_at[11:19]}Z" '
                f'title="{disabled_at}">{disabled_at}</time>: Failing since 2024-05-01: '
                "HTTP 500 from the receiver") in page
        assert f'action="/admin/webhooks/{endpoint_id}/enable"' in page


def test_enabling_an_endpoint_clears_its_notice(admin):
    endpoint_id = add_endpoint()
    disable_after_failures(endpoint_id, "Failing for three days")
    response = admin.post(f"/admin/webhooks/{endpoint_id}/enable")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/webhooks"
    enabled = endpoint(endpoint_id)
    assert (enabled.active, enabled.disabled_at, enabled.disabled_reason) == (True, None, None)
    page = admin.get("/admin/webhooks").text
    assert f"Webhook endpoint #{endpoint_id} enabled." in page
    assert "Failing for three days" not in page


def test_an_admin_disables_an_endpoint_and_enables_it_again(admin):
    endpoint_id = add_endpoint()
    assert admin.post(f"/admin/webhooks/{endpoint_id}/disable").status_code == 303
    assert endpoint(endpoint_id).active is False
    page = admin.get("/admin/webhooks").text
    assert f"Webhook endpoint #{endpoint_id} disabled." in page
    assert f'action="/admin/webhooks/{endpoint_id}/enable"' in page
    assert admin.post(f"/admin/webhooks/{endpoint_id}/enable").status_code == 303
    assert endpoint(endpoint_id).active is True


def test_a_change_made_on_the_endpoints_page_returns_there(admin):
    endpoint_id = add_endpoint()
    page = admin.get(f"/admin/webhooks/{endpoint_id}").text
    assert 'name="back" value="endpoint"' in page
    response = admin.post(f"/admin/webhooks/{endpoint_id}/disable", {"back": "endpoint"})
    assert response.headers["Location"] == f"/admin/webhooks/{endpoint_id}"
    other = admin.post(f"/admin/webhooks/{endpoint_id}/enable", {"back": "https://evil.test"})
    assert other.headers["Location"] == "/admin/webhooks"


# ---------------------------------------------------------------- deliveries


def test_the_endpoints_page_shows_its_recent_deliveries_newest_first(admin):
    endpoint_id = add_endpoint(event_types=EVENT_TYPES)
    delivered = add_delivery(endpoint_id, status="delivered", attempts=1, last_status=200,
                             last_error=None, event_type="approval.decided")
    failed = add_delivery(endpoint_id, status="failed", attempts=8)
    other = add_delivery(add_endpoint("https://elsewhere.example.com/hook"))
    page = admin.get(f"/admin/webhooks/{endpoint_id}").text
    rows = re.findall(r'<tr data-delivery="(\d+)">', page)
    assert rows == [str(failed), str(delivered)] and str(other) not in rows
    failed_row = page.split(f'data-delivery="{failed}"', 1)[1].split("</tr>", 1)[0]
    assert "failed" in failed_row and RECEIVER_ERROR in failed_row and "HTTP 500" in failed_row
    assert '<td class="num">8</td>' in failed_row
    assert "user.created" in failed_row
    delivered_row = page.split(f'data-delivery="{delivered}"', 1)[1].split("</tr>", 1)[0]
    assert "delivered" in delivered_row and "HTTP 200" in delivered_row
    assert "approval.decided" in delivered_row
    assert f'action="/admin/webhooks/{endpoint_id}/deliveries/{failed}/redeliver"' in page


def test_an_endpoint_without_deliveries_says_so(admin):
    assert "No deliveries yet." in admin.get(f"/admin/webhooks/{add_endpoint()}").text


def test_an_admin_redelivers_a_failed_delivery(admin):
    endpoint_id = add_endpoint()
    failed = add_delivery(endpoint_id, status="failed")
    response = admin.post(f"/admin/webhooks/{endpoint_id}/deliveries/{failed}/redeliver")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/webhooks/{endpoint_id}"
    assert delivery(endpoint_id, failed).status == "pending"
    page = admin.get(f"/admin/webhooks/{endpoint_id}").text
    assert f"Delivery #{failed} will be sent again." in page


def test_redelivering_without_the_csrf_token_is_refused_and_changes_nothing(admin):
    endpoint_id = add_endpoint()
    failed = add_delivery(endpoint_id, status="failed")
    before = snapshot()
    response = admin.post(f"/admin/webhooks/{endpoint_id}/deliveries/{failed}/redeliver",
                          csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert snapshot() == before


def test_every_change_made_on_the_pages_is_audited_with_the_admin_as_actor(admin):
    assert admin.post("/admin/webhooks", new_endpoint()).status_code == 201
    [added] = endpoints()
    failed = add_delivery(added.id)
    admin.post(f"/admin/webhooks/{added.id}/disable")
    admin.post(f"/admin/webhooks/{added.id}/enable")
    admin.post(f"/admin/webhooks/{added.id}/deliveries/{failed}/redeliver")
    db.session.rollback()
    audited = db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("webhook.%"))
                                 .order_by(AuditEvent.id))
    assert [(event.action, event.actor) for event in audited] == [
        (action, "operator:admin") for action in ("webhook.created", "webhook.disabled",
                                                  "webhook.enabled", "webhook.redelivered")]


# ---------------------------------------------------------------- unknown records, roles


@pytest.mark.parametrize("method, path", [
    ("GET", f"/admin/webhooks/{NOWHERE}"),
    ("POST", f"/admin/webhooks/{NOWHERE}/disable"),
    ("POST", f"/admin/webhooks/{NOWHERE}/enable"),
    ("POST", f"/admin/webhooks/{{endpoint}}/deliveries/{NOWHERE}/redeliver"),
    ("POST", f"/admin/webhooks/{NOWHERE}/deliveries/{{delivery}}/redeliver"),
    ("GET", "/admin/webhooks/0"),
    ("GET", "/admin/webhooks/１"),
    ("GET", "/admin/webhooks/99999999999999999999"),
    ("POST", "/admin/webhooks/{other}/deliveries/{delivery}/redeliver"),
], ids=["unknown endpoint", "disable unknown", "enable unknown", "unknown delivery",
        "unknown endpoint of a delivery", "id zero",
        "full-width digit", "beyond bigint", "another endpoint's delivery"])
def test_an_unknown_endpoint_or_delivery_is_the_404_page_and_changes_nothing(admin, method,
                                                                             path):
    endpoint_id = add_endpoint()
    failed = add_delivery(endpoint_id, status="failed")
    other = add_endpoint("https://elsewhere.example.com/hook")
    path = path.format(endpoint=endpoint_id, delivery=failed, other=other)
    before = snapshot()
    response = admin.post(path) if method == "POST" else admin.get(path)
    assert response.status_code == 404 and "Not found" in response.text
    assert snapshot() == before


@pytest.mark.parametrize("role", ["viewer", "auditor", "operator"])
def test_the_webhook_pages_are_forbidden_below_admin(login, role):
    endpoint_id = add_endpoint()
    failed = add_delivery(endpoint_id)
    browser = login(role)
    for path in ("/admin/webhooks", f"/admin/webhooks/{endpoint_id}"):
        response = browser.get(path)
        assert response.status_code == 403 and "Not allowed" in response.text
    before = snapshot()
    for path in ("/admin/webhooks", f"/admin/webhooks/{endpoint_id}/disable",
                 f"/admin/webhooks/{endpoint_id}/deliveries/{failed}/redeliver"):
        assert browser.post(path, new_endpoint()).status_code == 403
    assert snapshot() == before


def test_an_anonymous_visitor_is_sent_to_log_in(anonymous):
    endpoint_id = add_endpoint()
    for path in ("/admin/webhooks", f"/admin/webhooks/{endpoint_id}"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")


# ---------------------------------------------------------------- escaping


def test_a_script_in_a_description_and_a_receivers_error_is_shown_as_text(admin):
    response = admin.post("/admin/webhooks", new_endpoint(description=SCRIPT))
    assert response.status_code == 201
    [added] = endpoints()
    add_delivery(added.id, last_error=SCRIPT)
    for path in ("/admin/webhooks", f"/admin/webhooks/{added.id}"):
        page = admin.get(path).text
        assert SCRIPT not in page and ESCAPED in page
    disable_after_failures(added.id, SCRIPT)
    for path in ("/admin/webhooks", f"/admin/webhooks/{added.id}"):
        page = admin.get(path).text
        assert SCRIPT not in page and ESCAPED in page


def test_a_script_in_a_url_is_shown_as_text_whether_taken_or_refused(admin):
    response = admin.post("/admin/webhooks", new_endpoint(url=f'{URL}?q="><script>alert(1)'
                                                          "</script>"))
    assert response.status_code in (201, 422)
    assert "<script>alert(1)" not in response.text
    assert "<script>alert(1)" not in admin.get("/admin/webhooks").text
