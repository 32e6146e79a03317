"""Webhook endpoints: registration, state, deliveries as the dashboard and the CLI see them,
and the signature every delivery carries. The worker that sends them is deliverer.py.

An endpoint starts at the end of the event feed and receives what happens from then on.
Disabling one (by an admin, or by the worker after a delivery failed for the whole retry
window without any success) pauses it; enabling it resumes from where it stopped, so the
events in between are delivered then, and its pending deliveries get a fresh retry window.
The secret is returned once by `create_endpoint`; no other function here returns it.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import case, func, insert, select, update

from . import audit_events, errors, events
from .accounts import write_transaction
from .extensions import db
from .limits import is_id
from .models import EVENT_TYPES, Event, WebhookDelivery, WebhookEndpoint, utcnow

endpoints = WebhookEndpoint.__table__
deliveries = WebhookDelivery.__table__
SECRET_PREFIX = "whsec_"
URL_MAX = 2048
DESCRIPTION_MAX = 200
SCHEMES = ("http", "https")
# Everything an endpoint row holds but its secret: what pages, the CLI and the audit see.
SHOWN = [column for column in endpoints.c if column.name != "secret"]
DELIVERY_SHOWN = (deliveries.c.id, deliveries.c.event_id, Event.type.label("event_type"),
                  deliveries.c.status, deliveries.c.attempts, deliveries.c.created_at,
                  deliveries.c.next_attempt_at, deliveries.c.last_attempt_at,
                  deliveries.c.last_status, deliveries.c.last_error, deliveries.c.delivered_at)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256, keyed by the whole secret, of `timestamp.body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


# ---------------------------------------------------------------- endpoints


def create_endpoint(url: str, event_types, *, description: str | None = None,
                    who: audit_events.Who | None = None) -> tuple:
    """A new active endpoint at the end of the feed, and its secret (shown this once)."""
    values = {"url": checked_url(url), "event_types": checked_types(event_types),
              "description": checked_description(description)}
    who = who or audit_events.current_actor()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with write_transaction() as conn:
        after_xid, after_id = events.end(conn)
        endpoint_id = conn.execute(insert(endpoints).values(
            **values, secret=secret, active=True, created_at=utcnow(), created_by=who.label[:128],
            after_xid=after_xid, after_id=after_id).returning(endpoints.c.id)).scalar_one()
        audit_events.record("webhook.created", conn=conn, who=who, object_type="webhook",
                            object_id=endpoint_id, **values)
    return get_endpoint(endpoint_id), secret


def list_endpoints() -> list:
    """Every endpoint (secret aside) with its pending, delivered and failed counts."""
    counts = select(deliveries.c.endpoint_id, *[
        func.count(case((deliveries.c.status == status, 1))).label(status)
        for status in ("pending", "delivered", "failed")
    ]).group_by(deliveries.c.endpoint_id).subquery()
    return list(db.session.execute(
        select(*SHOWN, *[func.coalesce(counts.c[status], 0).label(status)
                         for status in ("pending", "delivered", "failed")])
        .outerjoin(counts, counts.c.endpoint_id == endpoints.c.id).order_by(endpoints.c.id)))


def get_endpoint(endpoint_id: int):
    row = None
    if is_id(endpoint_id):
        row = db.session.execute(select(*SHOWN).where(endpoints.c.id == endpoint_id)).first()
    if row is None:
        raise errors.UnknownWebhook(f"webhook endpoint {endpoint_id} does not exist",
                                    endpoint_id=endpoint_id)
    return row


def set_active(endpoint_id: int, active: bool, *, who: audit_events.Who | None = None) -> None:
    """Enable (clearing the notice; its pending deliveries are due now, with a fresh retry
    window) or disable an endpoint. Setting the state it has changes nothing."""
    if get_endpoint(endpoint_id).active == active:
        return
    who, now = who or audit_events.current_actor(), utcnow()
    with write_transaction() as conn:
        if active:  # deliveries before their endpoint: the worker locks in that order too
            conn.execute(update(deliveries).where(
                deliveries.c.endpoint_id == endpoint_id, deliveries.c.status == "pending",
            ).values(next_attempt_at=now, give_up_at=now + retry_window()))
        changed = conn.execute(update(endpoints).where(
            endpoints.c.id == endpoint_id, endpoints.c.active != active,
        ).values(active=active, disabled_at=None if active else now,
                 disabled_reason=None if active else f"disabled by {who.label}")).rowcount
        if changed:
            audit_events.record("webhook.enabled" if active else "webhook.disabled", conn=conn,
                                who=who, object_type="webhook", object_id=endpoint_id)


def retry_window() -> timedelta:
    return timedelta(seconds=current_app.config["WEBHOOK_RETRY_FOR_SECONDS"])


# ---------------------------------------------------------------- deliveries


def recent_deliveries(endpoint_id: int, limit: int = 20) -> list:
    """The endpoint's latest deliveries, newest first, with their event's type."""
    return list(db.session.execute(
        select(*DELIVERY_SHOWN).join(Event, Event.id == deliveries.c.event_id)
        .where(deliveries.c.endpoint_id == endpoint_id)
        .order_by(deliveries.c.id.desc()).limit(limit)))


def redeliver(delivery_id: int, *, endpoint_id: int | None = None,
              who: audit_events.Who | None = None) -> None:
    """Send a delivery again, whatever became of it: pending, due now, with a fresh retry
    window and its backoff started over (a send in flight finishes first: its lease holds).
    With `endpoint_id`, only a delivery of that endpoint."""
    now = utcnow()
    of_endpoint = () if endpoint_id is None else (deliveries.c.endpoint_id == endpoint_id,)
    with write_transaction() as conn:
        found = is_id(delivery_id) and conn.execute(
            update(deliveries).where(deliveries.c.id == delivery_id, *of_endpoint).values(
                status="pending", attempts=0, next_attempt_at=now,
                give_up_at=now + retry_window(), delivered_at=None)
            .returning(deliveries.c.endpoint_id, deliveries.c.event_id)).first()
        if not found:
            raise errors.UnknownDelivery(f"webhook delivery {delivery_id} does not exist",
                                         delivery_id=delivery_id)
        audit_events.record("webhook.redelivered", conn=conn, who=who,
                            object_type="webhook_delivery", object_id=delivery_id,
                            endpoint_id=found.endpoint_id, event_id=found.event_id)


# ---------------------------------------------------------------- what is accepted


def checked_url(url) -> str:
    """An http(s) URL with a host, in printable ASCII, without credentials or fragment."""
    if not isinstance(url, str) or not url.strip():
        raise errors.InvalidWebhook("url: enter the receiver's http(s) URL", field="url")
    url = url.strip()
    if len(url) > URL_MAX:
        raise errors.InvalidWebhook(f"url: at most {URL_MAX} characters", field="url")
    if not all("!" <= char <= "~" for char in url):
        raise errors.InvalidWebhook("url: printable ASCII only, no spaces (percent-encode "
                                    "the rest)", field="url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise errors.InvalidWebhook("url: not a valid URL", field="url") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise errors.InvalidWebhook("url: must start with http:// or https:// and name a host",
                                    field="url")
    if "@" in parts.netloc or "#" in url:
        raise errors.InvalidWebhook("url: no user:password@ and no #fragment (the secret "
                                    "signs every delivery)", field="url")
    return url


def checked_types(event_types) -> list[str]:
    """The event types named (a list, or a comma-separated string), in EVENT_TYPES order."""
    names = event_types.split(",") if isinstance(event_types, str) else event_types
    if not isinstance(names, (list, tuple, set, frozenset)) or not all(
            isinstance(name, str) for name in names):
        raise errors.InvalidWebhook("event_types: a list of event type names",
                                    field="event_types")
    wanted = {name.strip() for name in names} - {""}
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown or not wanted:
        shown = ", ".join(name[:40] for name in unknown[:3])
        raise errors.InvalidWebhook(
            (f"event_types: unknown {shown}; " if unknown else "event_types: ")
            + f"choose from {', '.join(EVENT_TYPES)}", field="event_types")
    return [name for name in EVENT_TYPES if name in wanted]


def checked_description(description) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str) or not description.isprintable():
        raise errors.InvalidWebhook("description: printable text on one line",
                                    field="description")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise errors.InvalidWebhook(f"description: at most {DESCRIPTION_MAX} characters",
                                    field="description")
    return description or None


# ---------------------------------------------------------------- flask webhooks ...

webhooks_cli = AppGroup("webhooks", help="Register webhook endpoints and redeliver events.")


@webhooks_cli.command("add")
@click.argument("url")
@click.option("--events", "event_types", required=True, metavar="TYPE[,TYPE]",
              help=f"Event types to send: {', '.join(EVENT_TYPES)}.")
@click.option("--description", default=None)
def add_command(url: str, event_types: str, description: str | None) -> None:
    """Register an endpoint; its secret is printed once, alone on the last line."""
    try:
        endpoint, secret = create_endpoint(url, event_types, description=description)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"created webhook endpoint {endpoint.id} {endpoint.url} for "
               f"{','.join(endpoint.event_types)}; store the signing secret now, it cannot be "
               "shown again:")
    click.echo(secret)


@webhooks_cli.command("list")
def list_command() -> None:
    """Endpoints with state, event types and delivery counts."""
    for row in list_endpoints():
        state = "active" if row.active else f"disabled ({row.disabled_reason})"
        click.echo(f"{row.id}\t{state}\t{','.join(row.event_types)}\tpending={row.pending} "
                   f"delivered={row.delivered} failed={row.failed}\t{row.url}")


@webhooks_cli.command("redeliver")
@click.argument("delivery_id", type=click.IntRange(min=1))
def redeliver_command(delivery_id: int) -> None:
    """Send a delivery again (pending now, with a fresh retry window)."""
    try:
        redeliver(delivery_id)
    except errors.WalletError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"delivery {delivery_id} is pending again")
