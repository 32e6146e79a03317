"""Webhook endpoints in a real browser (Chromium, real HTTP, PostgreSQL): an admin adds an
endpoint and copies its secret, shown once; a delivery to it fails (written as the worker would
write it, tests/web/webhook_records.py) and the admin sends it again; an endpoint disabled after
failing too long says why and is enabled again."""
import re

from playwright.sync_api import expect

from tests.web.webhook_records import (
    add_delivery, add_endpoint, delivery, disable_after_failures, endpoint,
)
from wallet_web import webhooks
from wallet_web.extensions import db
from wallet_web.models import WebhookEndpoint

from .conftest import screenshot

URL = "https://hooks.example.com/game-server"
REFUSED = "Connection refused by hooks.example.com"
REFUSED_FORM = "the server responded with a status of 422"  # logged by Chromium, not an error


def open_webhooks(page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Admin").click()
    page.get_by_role("navigation", name="Admin").get_by_role("link", name="Webhooks").click()
    page.wait_for_url("**/admin/webhooks")


def test_an_admin_adds_an_endpoint_sees_its_secret_once_and_redelivers_a_failure(log_in):
    page = log_in("admin")
    open_webhooks(page)
    page.get_by_label("URL").fill(URL)
    page.get_by_label("transaction.posted").check()
    page.get_by_label("user.created").check()
    page.get_by_label("Description (optional)").fill("Game server")
    page.get_by_role("button", name="Add endpoint").click()

    secret = page.locator("#new-secret")
    expect(secret).to_have_text(re.compile(r"^whsec_\S+$"))
    expect(page.get_by_role("status")).to_contain_text("shown only this once")
    db.session.rollback()
    [added] = webhooks.list_endpoints()
    assert db.session.get(WebhookEndpoint, added.id).secret == secret.inner_text()
    assert added.event_types == ["transaction.posted", "user.created"]
    row = page.locator(f'tr[data-endpoint="{added.id}"]')
    expect(row).to_contain_text("Game server")
    expect(row.locator(".state")).to_contain_text("active")
    screenshot(page, "admin-webhooks")

    open_webhooks(page)  # a GET (a reload would post the form again)
    expect(page.locator(f'tr[data-endpoint="{added.id}"]')).to_contain_text("Game server")
    expect(page.locator("#new-secret")).to_have_count(0)
    assert "whsec_" not in page.content()

    failed = add_delivery(added.id, status="failed", attempts=8, last_status=None,
                          last_error=REFUSED)
    page.locator(f'tr[data-endpoint="{added.id}"]').get_by_role("link", name=URL).click()
    page.wait_for_url(f"**/admin/webhooks/{added.id}")
    attempt = page.locator(f'tr[data-delivery="{failed}"]')
    expect(attempt.locator(".status-cell")).to_have_text("failed")
    expect(attempt.locator(".last-answer")).to_have_text(REFUSED)
    screenshot(page, "admin-webhook-deliveries")

    attempt.get_by_role("button", name=f"Redeliver #{failed}").click()
    page.wait_for_url(f"**/admin/webhooks/{added.id}")
    expect(page.locator("#flash")).to_contain_text(f"Delivery #{failed} will be sent again.")
    expect(page.locator(f'tr[data-delivery="{failed}"] .status-cell')).to_have_text("pending")
    assert delivery(added.id, failed).status == "pending"
    assert page.console_problems == []


def test_a_bad_url_is_an_inline_error_and_adds_nothing(log_in):
    page = log_in("admin")
    open_webhooks(page)
    page.get_by_label("URL").fill("not a web address")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#event_types-error")).to_contain_text("Choose at least one event type.")
    page.get_by_label("approval.decided").check()
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#url-error")).to_be_visible()
    expect(page.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#new-secret")).to_have_count(0)
    db.session.rollback()
    assert webhooks.list_endpoints() == []
    assert [text for text in page.console_problems if REFUSED_FORM not in text] == []


def test_an_endpoint_disabled_after_failing_says_why_and_is_enabled_from_its_page(log_in):
    endpoint_id = add_endpoint(URL)
    disable_after_failures(endpoint_id, "Failing for 3 days: HTTP 503 from the receiver")
    page = log_in("admin")
    open_webhooks(page)
    row = page.locator(f'tr[data-endpoint="{endpoint_id}"]')
    expect(row.get_by_role("note")).to_contain_text(
        "Failing for 3 days: HTTP 503 from the receiver")
    screenshot(page, "admin-webhooks-disabled")
    row.get_by_role("link", name=URL).click()
    state = page.locator(".facts .state")
    expect(state.get_by_role("note")).to_contain_text("HTTP 503 from the receiver")
    state.get_by_role("button", name="Enable").click()
    page.wait_for_url(f"**/admin/webhooks/{endpoint_id}")
    expect(page.locator("#flash")).to_contain_text(f"Webhook endpoint #{endpoint_id} enabled.")
    expect(page.get_by_role("note")).to_have_count(0)
    assert endpoint(endpoint_id).active is True
    assert page.console_problems == []
