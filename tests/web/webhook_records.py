"""Webhook records made for a test: an endpoint through the service, and what the delivery
worker would have written (a delivery and its attempts, an endpoint disabled after failing
too long) written directly, so no test needs the worker or a receiver."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from wallet_web import webhooks
from wallet_web.extensions import db
from wallet_web.models import Event, WebhookDelivery, WebhookEndpoint, utcnow

URL = "https://hooks.example.com/wallet"
SCRIPT = "<script>alert(1)</script>"
RECEIVER_ERROR = "HTTP 500 from the receiver"


def add_endpoint(url: str = URL, event_types=("transaction.posted",), **options) -> int:
    endpoint, _secret = webhooks.create_endpoint(url, list(event_types), **options)
    return endpoint.id


def add_delivery(endpoint_id: int, status: str = "failed", attempts: int = 8,
                 last_status: int | None = 500, last_error: str | None = RECEIVER_ERROR,
                 event_type: str = "user.created") -> int:
    """A delivery of a new event of `event_type` (not a transaction's: those carry no data)."""
    now = utcnow()
    event = Event(type=event_type, created_at=now, data={"test": True})
    db.session.add(event)
    db.session.flush()
    delivery = WebhookDelivery(
        endpoint_id=endpoint_id, event_id=event.id, status=status, attempts=attempts,
        created_at=now, next_attempt_at=now, give_up_at=now + timedelta(days=3),
        last_attempt_at=now if attempts else None, last_status=last_status,
        last_error=last_error, delivered_at=now if status == "delivered" else None)
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def disable_after_failures(endpoint_id: int, reason: str) -> None:
    """What the worker does to an endpoint failing for too long."""
    db.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                       .values(active=False, disabled_at=utcnow(), disabled_reason=reason))
    db.session.commit()


def endpoint(endpoint_id: int):
    db.session.rollback()  # what the requests committed
    return webhooks.get_endpoint(endpoint_id)


def delivery(endpoint_id: int, delivery_id: int):
    db.session.rollback()
    return next(row for row in webhooks.recent_deliveries(endpoint_id) if row.id == delivery_id)
