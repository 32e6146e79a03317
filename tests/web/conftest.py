"""Dashboard fixtures: operators of each role, test clients logged in as them, a customer and
other records made for the test (no test relies on a seeded id), and the login throttle's clock."""
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from wallet_web import ledger, login_throttle, operators, queries
from wallet_web.extensions import db
from wallet_web.models import Transaction, utcnow

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="(?:[a-z]+-)?csrf_token" type="hidden" value="([^"]+)"'
                   r'|"X-CSRFToken": "([^"]+)"')


def csrf_token(html: str) -> str:
    match = TOKEN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


class Browser:
    """A test client that keeps its session and sends the page's CSRF token with forms.

    Each request runs in its own app context, as in a server: the test's pushed context would
    otherwise share `g` (Flask-Login's current user, flask-wtf's token) between requests.
    """

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.token = None

    def request(self, method: str, path: str, **kwargs):
        with self.app.app_context():
            return self.client.open(path, method=method, buffered=True, **kwargs)

    def get(self, path: str, **kwargs):
        response = self.request("GET", path, **kwargs)
        if response.mimetype == "text/html" and "csrf_token" in response.text:
            self.token = csrf_token(response.text)
        return response

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            if self.token is None:
                self.get("/login")
            data.setdefault("csrf_token", self.token)
        return self.request("POST", path, data=data, **kwargs)

    def htmx(self, method: str, path: str, data: dict | None = None):
        headers = {"HX-Request": "true"}
        if method == "GET":
            return self.get(path, headers=headers)
        return self.post(path, data, headers=headers)


@pytest.fixture
def make_operator(app):
    """make_operator(role, username=role) -> the new operator (password PASSWORD)."""
    def make(role: str, username: str | None = None):
        return operators.create_operator(username or role, PASSWORD, role)
    return make


@pytest.fixture
def anonymous(app):
    return Browser(app)


@pytest.fixture
def login(app, make_operator):
    """login(role) -> a Browser logged in as a new operator with that role."""
    def log_in(role: str, username: str | None = None) -> Browser:
        operator = make_operator(role, username)
        browser = Browser(app)
        browser.get("/login")
        response = browser.post("/login", {"username": operator.username, "password": PASSWORD})
        assert response.status_code == 302, response.text
        browser.get("/")
        return browser
    return log_in


def gold_of(user_id: int) -> int:
    db.session.rollback()  # read what the requests committed
    return next(account.balance for account in queries.user_balances(user_id)
                if account.kind == "wallet" and account.asset_code == "GOLD")


def count_transactions() -> int:
    db.session.rollback()
    return db.session.query(Transaction).count()


OPENING = 100  # the customer's GOLD


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    opening_id: int  # the transaction of the opening top-up

    @property
    def page(self) -> str:
        return f"/users/{self.id}"


@pytest.fixture
def customer(make_user) -> Customer:
    """A user made for the test, holding OPENING GOLD from one top-up (reference opening:carla)."""
    user_id = make_user(name="carla")
    opening = ledger.topup(user_id, "GOLD", OPENING, "opening:carla", description="Opening balance")
    return Customer(user_id, "carla", opening.id)


@pytest.fixture
def world(customer, make_user):
    """Records for every dashboard action to act on (tests/web/actions.py)."""
    from .actions import make_world  # it imports this module

    return make_world(customer, make_user)


class Clock:
    """The login throttle's clock, moved by the test instead of waited for."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(utcnow())
    monkeypatch.setattr(login_throttle, "utcnow", clock)
    return clock
