"""The webhook worker (`flask --app wsgi events deliver`, the compose service `deliverer`).

Each tick it
1. fans out: for every active endpoint, under that endpoint's row lock (SKIP LOCKED, so
   workers share endpoints), reads the feed after the endpoint's position, adds a pending
   delivery per event of its types and moves the position past what it read, in one
   transaction. Nothing here is on the ledger's write path: events are written by their
   change, and read here later.
2. records the sends that finished: a 2xx is delivered; anything else is tried again after a
   backoff with full jitter, until the delivery's give_up_at (then failed, and its endpoint
   is disabled when nothing reached it since that delivery was made).
3. claims what its free threads can take, earliest due first, at most PER_ENDPOINT of one
   endpoint in flight (a hanging receiver holds a few threads, never all): the claim sets a
   lease and commits, and the POST happens outside any transaction.
A worker that dies mid-send leaves its lease to expire; another worker then sends again. That
is the only duplicate: deliveries are at-least-once and receivers dedupe on Wallet-Event-Id.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import Connection, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from . import audit_events, events, webhooks
from .accounts import write_transaction
from .extensions import db
from .models import utcnow
from .workers import stop_on_signals, through_outages

log = logging.getLogger("wallet_web.deliverer")
endpoints, deliveries = webhooks.endpoints, webhooks.deliveries
FANOUT_LIMIT = 500  # events read per endpoint and transaction
PER_ENDPOINT = 10
MAX_DOUBLINGS = 30
USER_AGENT = "wallet-webhooks/1"
COUNTS = ("fanned_out", "sent", "delivered", "retrying", "failed", "disabled")
SYSTEM = audit_events.Who("system")
ADD_DELIVERIES = {name: dialect.insert(deliveries).on_conflict_do_nothing()
                  for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


@dataclass(frozen=True)
class Target:
    """An active endpoint as the worker sees it."""
    id: int
    url: str
    secret: str
    position: tuple[int, int]  # how far its feed was read (another worker may be further)


@dataclass(frozen=True)
class Claimed:
    id: int
    endpoint_id: int
    event_id: int
    attempts: int
    lease_until: datetime
    created_at: datetime


@dataclass(frozen=True)
class Send:
    claimed: Claimed
    url: str
    secret: str
    event_type: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    status: int | None
    error: str | None
    at: datetime

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def active_targets() -> dict[int, Target]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(endpoints.c.id, endpoints.c.url, endpoints.c.secret,
                                   endpoints.c.after_xid, endpoints.c.after_id)
                            .where(endpoints.c.active)).all()
    return {row.id: Target(row.id, row.url, row.secret, (row.after_xid, row.after_id))
            for row in rows}


# ---------------------------------------------------------------- 1. fan-out


def fan_out(target: Target) -> tuple[int, int]:
    """Deliveries for the endpoint's events after its position: (events read, deliveries
    added). A look without a lock first: most ticks find nothing new, and write nothing."""
    with db.engine.connect() as conn:
        if not events.after(target.position, limit=1, conn=conn):
            return 0, 0
    endpoint_id = target.id
    with write_transaction() as conn:
        endpoint = conn.execute(
            select(endpoints.c.after_xid, endpoints.c.after_id, endpoints.c.event_types)
            .where(endpoints.c.id == endpoint_id, endpoints.c.active)
            .with_for_update(skip_locked=True)).first()
        if endpoint is None:  # another worker has it, or it was disabled
            return 0, 0
        # All types are read and the position moves past them, so an endpoint of a rare type
        # never scans the same stretch of the feed twice.
        read = events.after((endpoint.after_xid, endpoint.after_id), limit=FANOUT_LIMIT,
                            conn=conn)
        wanted = [row.id for row in read if row.type in endpoint.event_types]
        if wanted:
            conn.execute(ADD_DELIVERIES[conn.dialect.name], new_deliveries(endpoint_id, wanted))
        if read:
            conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id)
                         .values(after_xid=read[-1].xid, after_id=read[-1].id))
    return len(read), len(wanted)


def new_deliveries(endpoint_id: int, event_ids: list[int]) -> list[dict]:
    now = utcnow()
    give_up_at = now + webhooks.retry_window()
    return [{"endpoint_id": endpoint_id, "event_id": event_id, "status": "pending",
             "attempts": 0, "created_at": now, "next_attempt_at": now, "give_up_at": give_up_at}
            for event_id in event_ids]


# ---------------------------------------------------------------- 3. claim and send


def claim(rooms: dict[int, int], total: int) -> list[Claimed]:
    """Lease up to `total` due deliveries, at most rooms[endpoint] of each endpoint."""
    now = utcnow()
    lease_until = now + timedelta(seconds=current_app.config["WEBHOOK_LEASE_SECONDS"])
    due_now = with_due_deliveries(now)
    waiting = [endpoint_id for endpoint_id in rooms if endpoint_id in due_now]
    if not waiting:  # most ticks: no write transaction
        return []
    with write_transaction() as conn:
        ids = []
        for endpoint_id in waiting:
            ids += due(conn, endpoint_id, min(rooms[endpoint_id], total - len(ids)), now)
            if len(ids) >= total:
                break
        if not ids:
            return []
        rows = conn.execute(update(deliveries).where(deliveries.c.id.in_(ids)).values(
            lease_until=lease_until, attempts=deliveries.c.attempts + 1, last_attempt_at=now,
        ).returning(deliveries.c.id, deliveries.c.endpoint_id, deliveries.c.event_id,
                    deliveries.c.attempts, deliveries.c.created_at)).all()
    return [Claimed(row.id, row.endpoint_id, row.event_id, row.attempts, lease_until,
                    row.created_at) for row in rows]


def with_due_deliveries(now: datetime) -> set[int]:
    with db.engine.connect() as conn:
        return set(conn.execute(select(deliveries.c.endpoint_id.distinct()).where(
            *due_at(now))).scalars())


def due_at(now: datetime) -> tuple:
    return (deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now,
            or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now))


def due(conn: Connection, endpoint_id: int, limit: int, now: datetime) -> list[int]:
    """Pending deliveries of the endpoint that are due and not leased, locked (SKIP LOCKED:
    another worker's claim in progress is left to it)."""
    return list(conn.execute(
        select(deliveries.c.id).where(deliveries.c.endpoint_id == endpoint_id, *due_at(now))
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id).limit(limit)
        .with_for_update(skip_locked=True)).scalars())


def prepare(claimed: list[Claimed], targets: dict[int, Target]) -> list[Send]:
    """What to POST for each claimed delivery: its event as GET /api/v1/events shows it."""
    rows = db.session.execute(select(events.events).where(
        events.events.c.id.in_({item.event_id for item in claimed}))).all()
    shown = {item["id"]: item for item in events.render(rows)}
    db.session.rollback()  # no transaction stays open while we wait on receivers
    return [Send(item, targets[item.endpoint_id].url, targets[item.endpoint_id].secret,
                 shown[item.event_id]["type"], body(shown[item.event_id])) for item in claimed]


def body(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer like any non-2xx: redirects are not followed."""

    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirects)


def post(send: Send, timeout: float) -> Outcome:
    """One attempt; never raises (it runs in a pool thread). A 2xx later than `timeout`
    counts as a failure."""
    timestamp = str(int(time.time()))
    request = urllib.request.Request(send.url, data=send.body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "Wallet-Event-Id": str(send.claimed.event_id), "Wallet-Event-Type": send.event_type,
        "Wallet-Timestamp": timestamp,
        "Wallet-Signature": webhooks.sign(send.secret, timestamp, send.body)})
    started = time.monotonic()
    status, error = None, None
    try:
        with OPENER.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as answer:
        status, error = answer.code, f"HTTP {answer.code} {answer.reason}"
        answer.close()
    except Exception as failure:  # noqa: BLE001 (any failure is a failed attempt)
        error = described(failure)
    if error is None and time.monotonic() - started > timeout:
        error = f"answered after more than {timeout:g} s"
    return Outcome(send.claimed, status, error and printable(error), utcnow())


def described(failure: Exception) -> str:
    reason = getattr(failure, "reason", None)  # URLError wraps the socket's error
    cause = reason if isinstance(reason, BaseException) else failure
    if isinstance(cause, TimeoutError):
        return "timed out"
    return f"{type(cause).__name__}: {cause}"


def printable(text: str) -> str:
    """What a receiver said, fit for the table and the page: printable, at most 300 chars."""
    return "".join(char if char.isprintable() else "?" for char in text)[:300]


# ---------------------------------------------------------------- 2. record


def record(outcomes: list[Outcome]) -> Counter:
    """The outcomes in one transaction: deliveries in id order, then endpoints in id order
    (the order every writer of both follows)."""
    counts: Counter = Counter()
    with write_transaction() as conn:
        gave_up = []
        for outcome in sorted(outcomes, key=lambda outcome: outcome.claimed.id):
            result = delivered(conn, outcome) if outcome.ok else failed(conn, outcome)
            counts[result] += 1
            if result == "failed":
                gave_up.append(outcome)
        successes = {o.claimed.endpoint_id: o.at for o in outcomes if o.ok}
        for endpoint_id in sorted(successes):
            at = successes[endpoint_id]
            conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id, or_(
                endpoints.c.last_success_at.is_(None), endpoints.c.last_success_at < at),
            ).values(last_success_at=at))
        for outcome in sorted(gave_up, key=lambda outcome: outcome.claimed.endpoint_id):
            counts["disabled"] += disable_if_silent(conn, outcome)
    return counts


def delivered(conn: Connection, outcome: Outcome) -> str:
    """Delivered, even when the lease ran out meanwhile: a success is one."""
    conn.execute(update(deliveries).where(
        deliveries.c.id == outcome.claimed.id, deliveries.c.status == "pending",
    ).values(status="delivered", delivered_at=outcome.at, last_status=outcome.status,
             lease_until=None))
    log.info("webhook delivered", extra={"fields": fields(outcome)})
    return "delivered"


def failed(conn: Connection, outcome: Outcome) -> str:
    """Due again after a backoff, or failed past give_up_at. Only while the claim is still
    the delivery's: after a lease expiry or a redelivery, the newer claim decides."""
    claimed = outcome.claimed
    next_at = outcome.at + backoff(claimed.attempts)
    status = conn.execute(update(deliveries).where(
        deliveries.c.id == claimed.id, deliveries.c.status == "pending",
        deliveries.c.lease_until == claimed.lease_until,
        deliveries.c.attempts == claimed.attempts,
    ).values(
        status=case((deliveries.c.give_up_at <= outcome.at, "failed"), else_="pending"),
        next_attempt_at=case((deliveries.c.give_up_at < next_at, deliveries.c.give_up_at),
                             else_=next_at),
        last_status=outcome.status, last_error=outcome.error, lease_until=None,
    ).returning(deliveries.c.status)).scalar()
    log.warning("webhook delivery failed" if status == "failed" else "webhook attempt failed",
                extra={"fields": {**fields(outcome), "error": outcome.error}})
    return {"failed": "failed", "pending": "retrying"}.get(status, "superseded")


def backoff(attempts: int) -> timedelta:
    """Full jitter: a uniform wait up to base * 2**(attempts - 1), capped."""
    config = current_app.config
    ceiling = min(config["WEBHOOK_BACKOFF_CAP_SECONDS"],
                  config["WEBHOOK_BACKOFF_BASE_SECONDS"] * 2 ** min(attempts - 1, MAX_DOUBLINGS))
    return timedelta(seconds=random.uniform(0, ceiling))


def disable_if_silent(conn: Connection, outcome: Outcome) -> int:
    """Disable the endpoint when no delivery reached it since the given-up one was made."""
    since = outcome.claimed.created_at
    reason = (f"disabled after {span(outcome.at - since)} of failed deliveries without a "
              f"success (last error: {outcome.error})")[:500]
    changed = conn.execute(update(endpoints).where(
        endpoints.c.id == outcome.claimed.endpoint_id, endpoints.c.active,
        or_(endpoints.c.last_success_at.is_(None), endpoints.c.last_success_at < since),
    ).values(active=False, disabled_at=outcome.at, disabled_reason=reason)).rowcount
    if changed:
        audit_events.record("webhook.disabled", conn=conn, who=SYSTEM, object_type="webhook",
                            object_id=outcome.claimed.endpoint_id, reason=reason)
        log.warning("webhook endpoint disabled", extra={"fields": {
            "endpoint_id": outcome.claimed.endpoint_id, "reason": reason}})
    return changed


def span(length: timedelta) -> str:
    seconds = length.total_seconds()
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def fields(outcome: Outcome) -> dict:
    claimed = outcome.claimed
    return {"delivery_id": claimed.id, "endpoint_id": claimed.endpoint_id,
            "event_id": claimed.event_id, "attempt": claimed.attempts, "status": outcome.status}


# ---------------------------------------------------------------- the worker


class Worker:
    """Sends on a thread pool of WEBHOOK_BATCH threads; the database work stays on the
    calling thread, which must be in an app context."""

    def __init__(self):
        config = current_app.config
        self.threads = config["WEBHOOK_BATCH"]
        self.timeout = config["WEBHOOK_TIMEOUT_SECONDS"]
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="webhook")
        self.in_flight: dict[Future, Claimed] = {}
        self.finished: list[Outcome] = []  # sent, not recorded yet (the database was away)
        self.backlog = False  # the last fan-out left events unread

    def step(self, fan: bool = True, every: float | None = None) -> Counter:
        """Fan out (when `fan`), record finished sends and start new ones, then wait for a
        send to finish, at most `every` seconds (None: wait for all and record them)."""
        targets = active_targets()
        counts = Counter()
        if fan:
            fanned = [fan_out(target) for target in targets.values()]
            self.backlog = any(read >= FANOUT_LIMIT for read, _ in fanned)
            counts["fanned_out"] = sum(added for _, added in fanned)
        counts += self.record_finished()
        counts["sent"] = self.start(targets)
        self.collect(every)
        if every is None:
            counts += self.record_finished()
        return counts

    def start(self, targets: dict[int, Target]) -> int:
        busy = Counter(claimed.endpoint_id for claimed in self.in_flight.values())
        rooms = {endpoint_id: PER_ENDPOINT - busy[endpoint_id] for endpoint_id in
                 random.sample(list(targets), len(targets)) if busy[endpoint_id] < PER_ENDPOINT}
        free = self.threads - len(self.in_flight)
        claimed = claim(rooms, free) if rooms and free > 0 else []
        for send in prepare(claimed, targets) if claimed else []:
            self.in_flight[self.pool.submit(post, send, self.timeout)] = send.claimed
        return len(claimed)

    def collect(self, every: float | None) -> None:
        if not self.in_flight:
            return
        done, _ = wait(self.in_flight, timeout=every,
                       return_when=ALL_COMPLETED if every is None else FIRST_COMPLETED)
        for future in done:
            del self.in_flight[future]
            self.finished.append(future.result())

    def record_finished(self) -> Counter:
        if not self.finished:
            return Counter()
        counts = record(self.finished)
        self.finished = []
        return counts

    def close(self) -> Counter:
        """Let the sends in flight finish (each within the timeout) and record them."""
        self.collect(None)
        self.pool.shutdown()
        return self.record_finished()


def deliver_once() -> dict[str, int]:
    """One pass: fan out, send everything due and record it; the counts of each outcome."""
    worker = Worker()
    try:
        counts = worker.step()
    finally:
        worker.pool.shutdown()
    return {name: counts[name] for name in COUNTS}


# ---------------------------------------------------------------- flask events deliver

events_cli = AppGroup("events", help="The event feed's consumers.")


@events_cli.command("deliver")
@click.option("--every", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between looks at the feed and at due retries.")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@with_appcontext
def deliver_command(every: float, once: bool) -> None:
    """Send webhook deliveries: at least once, signed, retried with backoff."""
    config = current_app.config
    if config["WEBHOOK_LEASE_SECONDS"] <= config["WEBHOOK_TIMEOUT_SECONDS"]:
        raise click.UsageError("WEBHOOK_LEASE_SECONDS must be longer than "
                               "WEBHOOK_TIMEOUT_SECONDS, or a slow send would be sent twice")
    if once:
        click.echo(" ".join(f"{name}={count}" for name, count in deliver_once().items()))
        return
    stopping = stop_on_signals()
    log.info("deliverer started", extra={"fields": {"every_seconds": every}})
    run(Worker(), every, stopping)
    log.info("deliverer stopped")


def run(worker: Worker, every: float, stopping: threading.Event) -> None:
    """Fan out every `every` seconds (at once while there is a backlog); between, record and
    claim whenever a send finishes."""
    next_fan_out = 0.0
    while not stopping.is_set():
        fan = time.monotonic() >= next_fan_out
        counts = tick_safely(partial(worker.step, fan, every))
        if counts is None:  # the database is away
            stopping.wait(every)
            continue
        if fan:
            next_fan_out = time.monotonic() + (0 if worker.backlog else every)
        if not worker.in_flight and not counts["sent"]:
            stopping.wait(max(next_fan_out - time.monotonic(), 0))
    tick_safely(worker.close)


def tick_safely(work):
    return through_outages(work, log, "delivery pass failed")
