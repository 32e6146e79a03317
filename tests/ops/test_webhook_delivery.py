"""The webhook worker as it runs in its compose service (`flask --app wsgi events deliver`),
as a real process against a real HTTP receiver, with short timeouts and backoffs: a receiver
that fails its first attempts, one that hangs, the worker SIGKILLed mid-delivery and
PostgreSQL restarted under load. Every event arrives, signed; a duplicate only where
at-least-once allows it (a send whose worker died before recording it)."""
import signal
import threading

import pytest
from sqlalchemy import select

from tests.conftest import build_app
from tests.ops.private_pg import PrivateCluster
from tests.ops.support import flask_processes, poll_until
from tests.ops.test_database_restart import prepared_database
from tests.receiver import Receivers, endpoint_from_here, failing_first
from wallet_web import accounts, ledger
from wallet_web.extensions import db
from wallet_web.models import Event, WebhookDelivery

QUICK = {"WEBHOOK_TIMEOUT_SECONDS": "1", "WEBHOOK_LEASE_SECONDS": "2",
         "WEBHOOK_BACKOFF_BASE_SECONDS": "0.1", "WEBHOOK_BACKOFF_CAP_SECONDS": "0.3",
         "WEBHOOK_RETRY_FOR_SECONDS": "120", "DB_CONNECT_TIMEOUT_SECONDS": "2"}


@pytest.fixture
def receivers():
    with Receivers() as receive:
        yield receive


COMMAND = ["events", "deliver", "--every", "0.1"]  # the compose service's, polling faster


@pytest.fixture
def deliverers(tmp_path):
    """start(url, **env) -> a running `events deliver`; all are killed after the test."""
    yield from flask_processes(COMMAND, tmp_path / "deliverer.log", **QUICK)


def deliveries_of(endpoint_id: int) -> list[WebhookDelivery]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.id)))


def last_event_id() -> int:
    db.session.rollback()
    return db.session.scalars(select(Event.id).order_by(Event.id.desc())).first()


def test_a_receiver_failing_its_first_attempts_gets_the_event_once_it_answers_2xx(
        app, make_user, database_url, deliverers, receivers):
    receiver = receivers(failing_first(3))
    endpoint, secret = endpoint_from_here(receiver.url)
    worker = deliverers(database_url)
    make_user(balance=10)
    event_id = last_event_id()

    poll_until(lambda: [d.status for d in deliveries_of(endpoint.id)] == ["delivered"],
               "the delivery never succeeded")

    [delivery] = deliveries_of(endpoint.id)
    assert (delivery.event_id, delivery.attempts, delivery.last_status) == (event_id, 4, 200)
    assert receiver.received() == {event_id: 4}
    assert all(hit.signed_with(secret) for hit in receiver.hits)
    assert worker.stop(signal.SIGTERM) == 0
    log = worker.log()
    assert "deliverer started" in log and "deliverer stopped" in log
    assert log.count("webhook attempt failed") == 3 and secret not in log


def test_a_hanging_receiver_is_cut_off_and_retried_and_another_endpoint_does_not_wait(
        app, make_user, database_url, deliverers, receivers):
    hanging = receivers()

    def hang(hit):
        hanging.closing.wait(30)
        return 200

    hanging.answer = hang
    healthy = receivers()
    stuck, _ = endpoint_from_here(hanging.url)
    fine, _ = endpoint_from_here(healthy.url)
    deliverers(database_url, WEBHOOK_TIMEOUT_SECONDS="3", WEBHOOK_LEASE_SECONDS="4")
    user = make_user()
    for n in range(5):
        ledger.topup(user, "GOLD", 1, f"hang-{n}")

    poll_until(lambda: [(d.status, d.attempts) for d in deliveries_of(fine.id)]
               == [("delivered", 1)] * 5, "the healthy endpoint was held up")
    assert all(d.last_error is None for d in deliveries_of(stuck.id)), "before the timeout"

    poll_until(lambda: all(d.attempts >= 2 for d in deliveries_of(stuck.id)),
               "the hanging receiver's deliveries were not retried")
    assert {d.last_error for d in deliveries_of(stuck.id)} == {"timed out"}
    assert {d.status for d in deliveries_of(stuck.id)} == {"pending"}
    assert set(healthy.received().values()) == {1}


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_one_after_its_lease(
        app, make_user, database_url, deliverers, receivers):
    killed = threading.Event()

    def answer(hit):
        if len(receiver.hits) == 1:  # the first arrival: hold it until its sender is dead
            killed.wait(30)
        return 200

    receiver = receivers(answer)
    endpoint, secret = endpoint_from_here(receiver.url)
    first = deliverers(database_url)
    make_user(balance=10)
    event_id = last_event_id()
    poll_until(lambda: receiver.hits, "nothing was sent")

    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    killed.set()
    [delivery] = deliveries_of(endpoint.id)
    assert (delivery.status, delivery.attempts) == ("pending", 1)
    deliverers(database_url)
    poll_until(lambda: deliveries_of(endpoint.id)[0].status == "delivered",
               "the next worker never delivered it")

    assert deliveries_of(endpoint.id)[0].attempts == 2
    assert receiver.received() == {event_id: 2}  # at least once: the killed send, and again
    assert all(hit.signed_with(secret) for hit in receiver.hits)


class Producer:
    """A thread posting top-ups (and a new user now and then) until stopped, riding out the
    database's absence."""

    def __init__(self, app, user_id: int):
        self.app, self.user_id, self.made = app, user_id, 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        with self.app.app_context():
            while not self.stopping.wait(0.02):
                try:
                    self._one()
                except Exception:  # noqa: BLE001 (the database is away: try again)
                    db.session.rollback()
                finally:
                    db.session.remove()

    def _one(self):
        n = self.made
        ledger.topup(self.user_id, "GOLD", 1, f"load-{n}")
        if n % 10 == 0:
            accounts.create_user(f"load{n}", f"load{n}@example.test")
        self.made += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=60)


def test_every_event_arrives_when_postgresql_restarts_under_load(deliverers, receivers):
    cluster = PrivateCluster().init()
    try:
        url = cluster.url("hooks")
        prepared_database(url)
        app = build_app(url)
        receiver = receivers()
        with app.app_context():
            endpoint, secret = endpoint_from_here(receiver.url, "transaction.posted,user.created")
            user = accounts.create_user("loader", "loader@example.test")
        worker = deliverers(url)
        with Producer(app, user) as producer:
            poll_until(lambda: len(receiver.hits) >= 10, "nothing arrived under load")
            cluster.stop()
            poll_until(lambda: "delivery pass failed" in worker.log(),
                       "the worker did not notice the database going away")
            cluster.start()
            made_before = producer.made
            poll_until(lambda: producer.made >= made_before + 20, "no load after the restart")
        with app.app_context():
            db.session.rollback()
            wanted = set(db.session.scalars(select(Event.id).where(
                Event.id > endpoint.after_id)))
            poll_until(lambda: wanted <= set(receiver.received()), "events were lost")
            poll_until(lambda: {d.status for d in deliveries_of(endpoint.id)} == {"delivered"},
                       "a delivery was not recorded")
            db.engine.dispose()
        assert set(receiver.received()) == wanted
        # At least once: a delivery whose POST went out just before the database went away
        # could not be recorded, and goes out again after the restart (docs/events.md).
        assert set(receiver.received().values()) <= {1, 2}, "one worker: at most one repeat"
        assert all(hit.signed_with(secret) for hit in receiver.hits)
        assert worker.process.poll() is None
    finally:
        cluster.destroy()
