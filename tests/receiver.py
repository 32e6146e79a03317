"""For the webhook tests: a real receiver (an HTTP server on a thread that records every POST
and answers what the test's `answer(hit)` returns; it may sleep, or block on an event), and
endpoints that start where the test expects. Signatures are checked here by recomputing the
HMAC, independently of wallet_web."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from tests.ops.support import poll_until
from wallet_web import events, webhooks
from wallet_web.extensions import db
from wallet_web.models import Event


@dataclass(frozen=True)
class Hit:
    path: str
    headers: Message
    body: bytes
    at: float

    @property
    def event_id(self) -> int:
        return int(self.headers["Wallet-Event-Id"])

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        timestamp = self.headers["Wallet-Timestamp"]
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + self.body, hashlib.sha256)
        return self.headers["Wallet-Signature"] == f"v1={mac.hexdigest()}"


class Receiver:
    def __init__(self, answer=lambda hit: 200):
        self.answer = answer
        self.hits: list[Hit] = []
        self.closing = threading.Event()  # an answer that blocks should wait on this too
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks"

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hit = Hit(self.path, self.headers, body, time.monotonic())
                receiver.hits.append(hit)
                status = receiver.answer(hit)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up (timeout) or was killed meanwhile
                    pass

            def log_message(self, *args):
                pass

        return Handler

    def received(self) -> Counter:
        """How many times each event id arrived."""
        return Counter(hit.event_id for hit in list(self.hits))

    def hits_of(self, event_id: int) -> list[Hit]:
        return [hit for hit in list(self.hits) if hit.event_id == event_id]

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def feed_caught_up() -> None:
    """Wait until the feed shows every committed event. A transaction running anywhere on the
    server (in another database too: other tests) holds the feed back for a moment: the
    worker would not see the newest events yet, and an endpoint made meanwhile would start
    before them."""
    def last_committed():
        with db.engine.connect() as conn:
            return conn.execute(select(Event.xid, Event.id)
                                .order_by(Event.xid.desc(), Event.id.desc())).first()

    def caught_up():
        with db.engine.connect() as conn:
            return events.end(conn) == tuple(last_committed() or events.START)

    poll_until(caught_up, "the feed never caught up")


def endpoint_from_here(url: str, event_types="transaction.posted", **options):
    """create_endpoint, starting after every event committed so far."""
    feed_caught_up()
    return webhooks.create_endpoint(url, event_types, **options)


def failing_first(attempts: int, status: int = 500):
    """An answer that fails each event's first `attempts` arrivals, then says 200."""
    seen: Counter = Counter()
    lock = threading.Lock()

    def answer(hit: Hit) -> int:
        with lock:
            seen[hit.event_id] += 1
            return status if seen[hit.event_id] <= attempts else 200
    return answer


class Receivers:
    """`with Receivers() as receive:` receive(answer=...) -> a running Receiver; all are
    closed at the end (a test module's `receivers` fixture)."""

    def __init__(self):
        self.started: list[Receiver] = []

    def __enter__(self):
        return self.start

    def start(self, answer=lambda hit: 200) -> Receiver:
        self.started.append(Receiver(answer))
        return self.started[-1]

    def __exit__(self, *exc):
        for receiver in self.started:
            receiver.close()
