"""`flask webhooks ...` and `flask events deliver --once` as an operator types them: real
processes on the test database (the worker on both backends). Scripts read the secret from
the last line of `webhooks add`."""
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from tests.receiver import Receivers, endpoint_from_here, feed_caught_up
from wallet_web import ROOT_DIR, deliverer, webhooks
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, WebhookDelivery, WebhookEndpoint


@pytest.fixture
def flask_cli(app, database_url):
    """flask_cli(*args) -> the finished `flask --app wsgi *args` process."""
    env = {**os.environ, "DATABASE_URL": database_url}

    def run(*args: str) -> subprocess.CompletedProcess:
        db.session.rollback()  # let the process see what the test wrote and vice versa
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args],
                              cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    return run


@pytest.fixture
def receivers():
    with Receivers() as receive:
        yield receive


def count(model) -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def test_webhooks_add_prints_the_secret_alone_on_the_last_line(flask_cli, receivers):
    receiver = receivers()

    added = flask_cli("webhooks", "add", receiver.url, "--events",
                      "transaction.posted,user.created", "--description", "shop")

    assert added.returncode == 0, added.stderr
    *summary, secret = added.stdout.strip().splitlines()
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    assert secret not in "\n".join(summary) and secret not in added.stderr
    [endpoint] = webhooks.list_endpoints()
    assert (endpoint.url, endpoint.event_types, endpoint.description, endpoint.active) == (
        receiver.url, ["transaction.posted", "user.created"], "shop", True)
    assert endpoint.created_by.startswith("cli:")
    assert f"created webhook endpoint {endpoint.id}" in summary[0]

    listed = flask_cli("webhooks", "list")
    assert listed.returncode == 0
    assert listed.stdout.startswith(f"{endpoint.id}\tactive\ttransaction.posted,user.created\t")
    assert secret not in listed.stdout


def test_webhooks_add_refuses_bad_input_with_a_message_and_writes_nothing(flask_cli):
    for args, says in [
        (("https://user:pw@hooks.example.test/", "--events", "transaction.posted"), "url:"),
        (("https://hooks.example.test/", "--events", "transaction.posted,nope"),
         "event_types: unknown nope"),
    ]:
        refused = flask_cli("webhooks", "add", *args)

        assert refused.returncode == 1
        assert says in refused.stderr and "Traceback" not in refused.stderr
    assert count(WebhookEndpoint) == 0
    assert db.session.scalars(select(AuditEvent).where(
        AuditEvent.action.like("webhook.%"))).all() == []


@pytest.mark.both_backends
def test_events_deliver_once_sends_what_is_due_and_prints_the_counts(
        flask_cli, make_user, receivers):
    receiver = receivers()
    _, secret = endpoint_from_here(receiver.url, "user.created")
    make_user()
    feed_caught_up()

    delivered = flask_cli("events", "deliver", "--once")

    assert delivered.returncode == 0, delivered.stderr
    assert delivered.stdout.split() == ["fanned_out=1", "sent=1", "delivered=1", "retrying=0",
                                        "failed=0", "disabled=0"]
    [hit] = receiver.hits
    assert hit.signed_with(secret) and hit.headers["Wallet-Event-Type"] == "user.created"


def test_webhooks_redeliver_makes_a_delivery_pending_and_refuses_an_unknown_id(
        flask_cli, make_user, receivers):
    receiver = receivers()
    endpoint_from_here(receiver.url, "user.created")
    make_user()
    feed_caught_up()
    deliverer.deliver_once()
    delivery_id = db.session.scalars(select(WebhookDelivery.id)).one()

    again = flask_cli("webhooks", "redeliver", str(delivery_id))

    assert again.returncode == 0 and "pending again" in again.stdout
    assert deliverer.deliver_once()["delivered"] == 1 and len(receiver.hits) == 2
    unknown = flask_cli("webhooks", "redeliver", str(delivery_id + 100))
    assert unknown.returncode == 1 and "does not exist" in unknown.stderr


def test_events_deliver_refuses_a_lease_shorter_than_the_timeout(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/unused.sqlite3",
           "WEBHOOK_LEASE_SECONDS": "5", "WEBHOOK_TIMEOUT_SECONDS": "10"}

    refused = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "events",
                              "deliver", "--once"], cwd=ROOT_DIR, env=env, capture_output=True,
                             text=True, timeout=60)

    assert refused.returncode == 2
    assert "WEBHOOK_LEASE_SECONDS must be longer" in refused.stderr
