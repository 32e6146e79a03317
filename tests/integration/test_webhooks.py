"""Webhooks as a service: endpoints registered with validation and their secret returned
once, and the worker's passes (deliverer.deliver_once) against a real HTTP receiver: only the
events after the endpoint's start and of its types, signed, retried with backoff, given up and
the endpoint disabled after the retry window, redelivered on request, and never sent twice by
workers running at once."""
import io
import json
import logging
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.ops.support import poll_until
from tests.receiver import Hit, Receivers, endpoint_from_here, failing_first, feed_caught_up
from tests.threads import run_at_once
from wallet_web import ROOT_DIR, api_keys, deliverer, errors, events, ledger, webhooks
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, Event, WebhookDelivery, WebhookEndpoint

FAST = {"WEBHOOK_TIMEOUT_SECONDS": 2.0, "WEBHOOK_BACKOFF_BASE_SECONDS": 0.05,
        "WEBHOOK_BACKOFF_CAP_SECONDS": 0.2, "WEBHOOK_LEASE_SECONDS": 5.0}


@pytest.fixture
def receivers():
    with Receivers() as receive:
        yield receive


@pytest.fixture
def fast(app):
    """The app with retries a test can wait for."""
    app.config.update(FAST)
    return app


def deliveries_of(endpoint_id: int) -> list[WebhookDelivery]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.id)))


def statuses(endpoint_id: int) -> list[str]:
    return [delivery.status for delivery in deliveries_of(endpoint_id)]


def deliver_once() -> dict[str, int]:
    """One worker pass over everything committed so far."""
    feed_caught_up()
    return deliverer.deliver_once()


def deliver_until(condition, what: str):
    """Worker passes until condition() holds."""
    def passed():
        deliverer.deliver_once()
        db.session.rollback()
        return condition()
    return poll_until(passed, what, seconds=30, interval=0.02)


def feed_ids(types=("transaction.posted",)) -> list[int]:
    db.session.rollback()
    return list(db.session.scalars(select(Event.id).where(Event.type.in_(types))
                                   .order_by(Event.id)))


def trail(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


def count(model) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


# ---------------------------------------------------------------- endpoints


@pytest.mark.both_backends
def test_an_endpoint_starts_active_at_the_end_of_the_feed_and_its_secret_is_returned_once(
        app, make_user):
    make_user(balance=100)  # events before the endpoint

    endpoint, secret = endpoint_from_here(
        "https://hooks.example.test/wallet?shop=1", " user.created, transaction.posted ",
        description="  the shop  ")

    last = db.session.execute(select(Event.xid, Event.id)
                              .order_by(Event.xid.desc(), Event.id.desc())).first()
    assert (endpoint.after_xid, endpoint.after_id) == tuple(last)
    assert endpoint.active and endpoint.disabled_at is None
    assert endpoint.event_types == ["transaction.posted", "user.created"]
    assert endpoint.description == "the shop"
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    assert not hasattr(endpoint, "secret")
    assert not hasattr(webhooks.get_endpoint(endpoint.id), "secret")
    [listed] = webhooks.list_endpoints()
    assert not hasattr(listed, "secret")
    assert (listed.id, listed.pending, listed.delivered, listed.failed) == (endpoint.id, 0, 0, 0)
    [created] = trail("webhook.created")
    assert created.object_id == str(endpoint.id)
    assert created.details["url"] == "https://hooks.example.test/wallet?shop=1"
    assert secret not in json.dumps(created.details)


BAD_ENDPOINTS = [  # (url, event types, options, the field named)
    ("ftp://hooks.example.test/x", "transaction.posted", {}, "url"),
    ("https:///no-host", "transaction.posted", {}, "url"),
    ("hooks.example.test/x", "transaction.posted", {}, "url"),
    ("https://user:password@hooks.example.test/", "transaction.posted", {}, "url"),
    ("https://hooks.example.test/#fragment", "transaction.posted", {}, "url"),
    ("https://hooks.example.test/" + "a" * 2030, "transaction.posted", {}, "url"),
    ("https://hööks.example.test/", "transaction.posted", {}, "url"),
    ("https://hooks.example.test/a b", "transaction.posted", {}, "url"),
    ("https://hooks.example.test:99999/", "transaction.posted", {}, "url"),
    ("https://hooks.example.test/\x00", "transaction.posted", {}, "url"),
    ("", "transaction.posted", {}, "url"),
    (None, "transaction.posted", {}, "url"),
    ("https://hooks.example.test/", "", {}, "event_types"),
    ("https://hooks.example.test/", " , ", {}, "event_types"),
    ("https://hooks.example.test/", [], {}, "event_types"),
    ("https://hooks.example.test/", "transaction.posted,user.deleted", {}, "event_types"),
    ("https://hooks.example.test/", [1], {}, "event_types"),
    ("https://hooks.example.test/", None, {}, "event_types"),
    ("https://hooks.example.test/", "user.created", {"description": "d" * 201}, "description"),
    ("https://hooks.example.test/", "user.created", {"description": "a\x00b"}, "description"),
    ("https://hooks.example.test/", "user.created", {"description": "two\nlines"}, "description"),
]


@pytest.mark.parametrize("url, event_types, options, field", BAD_ENDPOINTS)
def test_each_bad_input_is_refused_with_its_field_and_nothing_is_written(
        app, url, event_types, options, field):
    with pytest.raises(errors.InvalidWebhook) as refused:
        webhooks.create_endpoint(url, event_types, **options)

    assert refused.value.details["field"] == field
    assert (refused.value.code, refused.value.status) == ("invalid_webhook", 422)
    assert count(WebhookEndpoint) == 0 and trail("webhook.created") == []


def test_unknown_endpoints_and_deliveries_are_404s(app):
    for missing in (0, -1, 999, "1", 2**63):
        with pytest.raises(errors.UnknownWebhook) as unknown:
            webhooks.get_endpoint(missing)
        assert (unknown.value.code, unknown.value.status) == ("unknown_webhook", 404)
        with pytest.raises(errors.UnknownDelivery) as unknown:
            webhooks.redeliver(missing)
        assert (unknown.value.code, unknown.value.status) == ("unknown_delivery", 404)
    with pytest.raises(errors.UnknownWebhook):
        webhooks.set_active(999, False)


def test_sign_is_the_hex_hmac_sha256_of_the_timestamp_a_dot_and_the_body():
    assert webhooks.sign("whsec_test", "1700000000", b'{"id":1}') == (
        "v1=2f441ba4b3b2d50d28a9ab9d9fd8880376ecd1eb5d0435401553f5d8d0a5dcf8")


# ---------------------------------------------------------------- the worker


@pytest.mark.both_backends
def test_the_worker_sends_the_events_after_the_start_of_the_endpoints_types_signed(
        fast, make_user, receivers):
    make_user(balance=50)  # before the endpoint: never sent
    receiver = receivers()
    endpoint, secret = endpoint_from_here(receiver.url, "transaction.posted")
    user = make_user(balance=70)  # user.created (not wanted) and transaction.posted
    ledger.topup(user, "GOLD", 5, "after-2")
    wanted = feed_ids()[-2:]

    counts = deliver_once()

    assert (counts["fanned_out"], counts["sent"], counts["delivered"]) == (2, 2, 2)
    assert sorted(receiver.received().elements()) == wanted
    rows = {row.id: row for row in events.after(events.START, limit=1000)}
    for hit in receiver.hits:
        assert hit.signed_with(secret)
        assert hit.path == "/hooks"
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["Wallet-Event-Type"] == "transaction.posted"
        assert abs(int(hit.headers["Wallet-Timestamp"]) - time.time()) < 60
        assert hit.body == json.dumps(events.render([rows[hit.event_id]])[0],
                                      separators=(",", ":"), ensure_ascii=False).encode()
    assert deliver_once()["sent"] == 0  # nothing twice
    assert {(d.status, d.attempts) for d in deliveries_of(endpoint.id)} == {("delivered", 1)}
    assert webhooks.get_endpoint(endpoint.id).last_success_at is not None


def test_a_delivery_body_is_the_event_as_get_api_v1_events_shows_it(
        fast, make_user, receivers):
    receiver = receivers()
    endpoint_from_here(receiver.url, "user.created,transaction.posted")
    make_user(balance=70)
    token = api_keys.create_key("reader", "read")[1]

    deliver_once()

    page = fast.test_client().get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    shown = {item["id"]: item for item in page.json["items"]}
    assert len(receiver.hits) == 2
    assert all(hit.event == shown[hit.event_id] for hit in receiver.hits)


@pytest.mark.both_backends
def test_a_failed_attempt_is_retried_after_a_backoff_until_the_receiver_says_2xx(
        fast, make_user, receivers):
    receiver = receivers(failing_first(2, status=503))
    endpoint, secret = endpoint_from_here(receiver.url, "transaction.posted")
    make_user(balance=10)

    assert deliver_once()["retrying"] == 1
    [first] = deliveries_of(endpoint.id)
    assert (first.status, first.attempts, first.last_status) == ("pending", 1, 503)
    assert first.last_error == "HTTP 503 Service Unavailable"
    wait = first.next_attempt_at - first.last_attempt_at
    assert 0 <= wait.total_seconds() <= FAST["WEBHOOK_BACKOFF_BASE_SECONDS"] + 0.1
    deliver_until(lambda: statuses(endpoint.id) == ["delivered"], "never delivered")

    [delivery] = deliveries_of(endpoint.id)
    assert (delivery.attempts, delivery.last_status) == (3, 200)
    assert len(receiver.hits) == 3 and all(hit.signed_with(secret) for hit in receiver.hits)
    assert len({hit.headers["Wallet-Event-Id"] for hit in receiver.hits}) == 1


def redirect(hit: Hit) -> int:
    return 302


def hang(receiver_closing):
    def answer(hit: Hit) -> int:
        receiver_closing.wait(1.5)
        return 200
    return answer


def test_a_redirect_is_not_followed_and_a_slow_answer_times_out(fast, make_user, receivers):
    fast.config["WEBHOOK_TIMEOUT_SECONDS"] = 0.5
    redirecting = receivers(redirect)
    hanging = receivers()
    hanging.answer = hang(hanging.closing)
    first, _ = endpoint_from_here(redirecting.url, "transaction.posted")
    second, _ = endpoint_from_here(hanging.url, "transaction.posted")
    make_user(balance=10)

    started = time.monotonic()
    assert deliver_once()["retrying"] == 2
    assert time.monotonic() - started < 1.4  # the two were sent at once, the slow one cut off

    assert deliveries_of(first.id)[0].last_error == "HTTP 302 Found"
    assert len(redirecting.hits) == 1
    assert deliveries_of(second.id)[0].last_error == "timed out"


def test_a_hanging_receiver_gets_a_few_of_a_workers_threads_and_the_others_the_rest(
        fast, make_user, receivers):
    fast.config.update(WEBHOOK_TIMEOUT_SECONDS=0.5, WEBHOOK_BATCH=deliverer.PER_ENDPOINT + 4)
    hanging, healthy = receivers(), receivers()
    hanging.answer = hang(hanging.closing)
    endpoint_from_here(hanging.url)
    endpoint_from_here(healthy.url)
    user = make_user()
    for n in range(deliverer.PER_ENDPOINT + 5):
        ledger.topup(user, "GOLD", 1, f"many-{n}")

    assert deliver_once()["sent"] == deliverer.PER_ENDPOINT + 4

    assert len(hanging.hits) <= deliverer.PER_ENDPOINT
    assert len(healthy.hits) >= 4


def test_a_delivery_past_its_retry_window_fails_and_an_endpoint_without_success_is_disabled(
        fast, make_user, receivers):
    fast.config["WEBHOOK_RETRY_FOR_SECONDS"] = 0.4
    receiver = receivers(lambda hit: 500)
    endpoint, _ = endpoint_from_here(receiver.url, "transaction.posted")
    user = make_user(balance=10)

    deliver_until(lambda: statuses(endpoint.id) == ["failed"], "never gave up")

    shown = webhooks.get_endpoint(endpoint.id)
    assert not shown.active and shown.disabled_at is not None
    assert re.fullmatch(r"disabled after \d+ s of failed deliveries without a success "
                        r"\(last error: HTTP 500 Internal Server Error\)", shown.disabled_reason)
    [disabled] = trail("webhook.disabled")
    assert (disabled.actor, disabled.object_id) == ("system", str(endpoint.id))
    assert deliveries_of(endpoint.id)[0].attempts >= 2

    ledger.topup(user, "GOLD", 5, "while-disabled")
    sent_before = len(receiver.hits)
    assert deliver_once()["sent"] == 0 and len(receiver.hits) == sent_before

    receiver.answer = lambda hit: 200
    fast.config["WEBHOOK_RETRY_FOR_SECONDS"] = 60
    webhooks.set_active(endpoint.id, True)
    assert webhooks.get_endpoint(endpoint.id).disabled_reason is None
    deliver_until(lambda: statuses(endpoint.id) == ["failed", "delivered"],
                  "the event written while disabled was not delivered on enabling")
    assert feed_ids()[-1] == receiver.hits[-1].event_id


def test_one_rejected_event_does_not_disable_an_endpoint_that_takes_the_others(
        fast, make_user, receivers):
    fast.config["WEBHOOK_RETRY_FOR_SECONDS"] = 0.4
    user = make_user()
    receiver = receivers()
    endpoint, _ = endpoint_from_here(receiver.url, "transaction.posted")
    ledger.topup(user, "GOLD", 5, "rejected")
    rejected = feed_ids()[-1]
    receiver.answer = lambda hit: 400 if hit.event_id == rejected else 200
    ledger.topup(user, "GOLD", 5, "taken")

    deliver_until(lambda: sorted(statuses(endpoint.id)) == ["delivered", "failed"],
                  "the rejected delivery never gave up")

    assert webhooks.get_endpoint(endpoint.id).active
    assert trail("webhook.disabled") == []


def test_an_endpoint_disabled_by_an_admin_gets_nothing_until_enabled_then_everything(
        fast, make_user, receivers):
    receiver = receivers()
    endpoint, _ = endpoint_from_here(receiver.url, "transaction.posted")

    webhooks.set_active(endpoint.id, False)
    webhooks.set_active(endpoint.id, False)  # already: nothing changes
    make_user(balance=10)
    make_user(balance=20)
    assert deliver_once()["sent"] == 0 and receiver.hits == []
    assert webhooks.get_endpoint(endpoint.id).disabled_reason.startswith("disabled by cli:")

    webhooks.set_active(endpoint.id, True)
    deliver_once()

    assert sorted(receiver.received()) == feed_ids()[-2:]
    assert [event.action for event in trail("webhook.disabled") + trail("webhook.enabled")] == [
        "webhook.disabled", "webhook.enabled"]


def test_redeliver_sends_a_delivered_event_again_now_and_is_audited(
        fast, make_user, receivers):
    receiver = receivers()
    endpoint, secret = endpoint_from_here(receiver.url, "transaction.posted")
    make_user(balance=10)
    deliver_once()
    [delivered] = deliveries_of(endpoint.id)
    delivery_id, event_id, window = delivered.id, delivered.event_id, delivered.give_up_at

    webhooks.redeliver(delivery_id)

    [again] = deliveries_of(endpoint.id)
    assert (again.status, again.attempts, again.delivered_at) == ("pending", 0, None)
    assert again.give_up_at > window
    assert deliver_once()["delivered"] == 1
    assert list(receiver.received().values()) == [2]
    assert all(hit.signed_with(secret) for hit in receiver.hits)
    [audited] = trail("webhook.redelivered")
    assert audited.object_id == str(delivery_id)
    assert audited.details == {"endpoint_id": endpoint.id, "event_id": event_id}


def test_recent_deliveries_are_newest_first_with_their_event_type_and_the_list_counts_them(
        fast, make_user, receivers):
    receiver = receivers(lambda hit: 200 if hit.headers["Wallet-Event-Type"] == "user.created"
                         else 500)
    endpoint, _ = endpoint_from_here(receiver.url, "transaction.posted,user.created")
    make_user(balance=10)
    make_user(balance=20)
    deliver_once()

    recent = webhooks.recent_deliveries(endpoint.id, limit=3)

    assert [row.id for row in recent] == sorted((row.id for row in recent), reverse=True)
    assert len(recent) == 3
    newest = recent[0]
    assert (newest.event_type, newest.status, newest.attempts, newest.last_status) == (
        "transaction.posted", "pending", 1, 500)
    assert newest.last_error == "HTTP 500 Internal Server Error"
    assert newest.delivered_at is None and newest.next_attempt_at is not None
    [listed] = webhooks.list_endpoints()
    assert (listed.pending, listed.delivered, listed.failed) == (2, 2, 0)


def test_two_workers_at_once_never_send_a_delivery_twice(fast, make_user, receivers):
    fast.config["WEBHOOK_BATCH"] = 4
    def slow(hit):
        time.sleep(0.005)
        return 200

    first, second = receivers(slow), receivers(slow)
    user = make_user()
    for receiver in (first, second):
        endpoint_from_here(receiver.url, "transaction.posted")
    for n in range(30):
        ledger.topup(user, "GOLD", 1, f"busy-{n}")
    wanted = feed_ids()[-30:]

    def work():
        deadline = time.monotonic() + 30
        while count_pending() and time.monotonic() < deadline:
            deliverer.deliver_once()

    feed_caught_up()
    run_at_once(fast, [work, work, work])

    for receiver in (first, second):
        assert sorted(receiver.received()) == wanted
        assert set(receiver.received().values()) == {1}


def count_pending() -> int:
    db.session.rollback()
    fanned = db.session.execute(select(func.count()).select_from(WebhookDelivery)).scalar_one()
    pending = db.session.execute(select(func.count()).select_from(WebhookDelivery).where(
        WebhookDelivery.status == "pending")).scalar_one()
    return pending if fanned else 1


def test_the_secret_is_never_logged(fast, make_user, receivers):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("wallet_web")
    logger.addHandler(handler)
    previous, logger.level = logger.level, logging.DEBUG
    try:
        receiver = receivers(failing_first(1))
        _, secret = endpoint_from_here(receiver.url, "transaction.posted")
        make_user(balance=10)
        deliver_until(lambda: receiver.received(), "nothing sent")
        deliver_until(lambda: len(receiver.hits) == 2, "not retried")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    logged = stream.getvalue()
    assert "webhook attempt failed" in logged and "webhook delivered" in logged
    assert secret not in logged and receiver.hits[0].headers["Wallet-Signature"] not in logged


# ---------------------------------------------------------------- the receiver's side


def receiver_example() -> str:
    text = (Path(ROOT_DIR) / "docs" / "events.md").read_text()
    return re.search(r"<!-- receiver example -->\n```python\n(.*?)```", text, re.DOTALL).group(1)


def test_the_receiver_example_in_the_docs_verifies_a_real_delivery_and_refuses_forgeries(
        fast, make_user, receivers):
    code = receiver_example()
    assert len(code.strip().splitlines()) <= 15
    namespace = {}
    exec(code, namespace)  # noqa: S102 (our own documentation)
    verify = namespace["verify"]
    receiver = receivers()
    _, secret = endpoint_from_here(receiver.url, "transaction.posted")
    make_user(balance=10)
    deliver_once()
    [hit] = receiver.hits

    tampered = hit.body.replace(b'"amount":10', b'"amount":99')
    assert verify(secret, hit.headers, hit.body)
    assert tampered != hit.body and not verify(secret, hit.headers, tampered)
    assert not verify("whsec_" + "x" * 43, hit.headers, hit.body)
    old = str(int(time.time()) - 301)
    replayed = {"Wallet-Timestamp": old, "Wallet-Signature": webhooks.sign(secret, old, hit.body)}
    assert not verify(secret, replayed, hit.body)
    assert not verify(secret, {}, hit.body)
