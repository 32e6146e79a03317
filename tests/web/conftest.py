"""Dashboard fixtures: operators of each role, test clients logged in as them, a customer and
other records made for the test (no test relies on a seeded id), movement requests waiting for
approval, and the clocks of the login throttle and of the approvals."""
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from wallet_web import approvals, controls, ledger, login_throttle, operators, queries
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
    """make_operator(role, username=role, can_approve=admins only) -> the new operator
    (password PASSWORD)."""
    def make(role: str, username: str | None = None, can_approve: bool | None = None):
        return operators.create_operator(username or role, PASSWORD, role, can_approve)
    return make


@pytest.fixture
def anonymous(app):
    return Browser(app)


@pytest.fixture
def login(app, make_operator):
    """login(role, username=role, can_approve=admins only) -> a Browser logged in as a new
    operator with that role (and the approver right when asked)."""
    def log_in(role: str, username: str | None = None, can_approve: bool | None = None) -> Browser:
        operator = make_operator(role, username, can_approve)
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
def world(customer, make_user, make_request):
    """Records for every dashboard action to act on (tests/web/actions.py)."""
    from .actions import make_world  # it imports this module

    return make_world(customer, make_user, make_request)


# ---------------------------------------------------------------- operator controls

REASON_CODE = "goodwill"  # a code of the starting list (controls.DEFAULT_REASON_CODES)


def threshold(asset: str = "GOLD") -> int:
    """From this amount a dashboard movement waits for approval."""
    return controls.policy_for(asset).approval_threshold


def signed_in(operator) -> operators.SignedIn:
    """An operator as approvals.submit sees the signed-in one."""
    return operators.SignedIn(operator.id, operator.username, operator.role, "",
                              operator.can_approve)


def request_row(request_id: int):
    return queries.get_request(request_id)  # read afresh


@pytest.fixture
def make_request(app):
    """make_request(user_id, amount=threshold(), kind="topup", maker="maker", **intent) -> the
    id of a GOLD request waiting for approval, made by `maker` (an operator, made when missing)."""
    references = itertools.count(1)

    def make(user_id: int, amount: int | None = None, kind: str = "topup",
             maker: str = "maker", description: str = "Needs a checker", **intent) -> int:
        operator = (operators.find_operator(maker)
                    or operators.create_operator(maker, PASSWORD, "operator"))
        intent = approvals.Intent(kind, f"test-request-{next(references)}", REASON_CODE,
                                  description, "GOLD", amount or threshold(),
                                  user_id=user_id, **intent)
        outcome = approvals.submit(intent, signed_in(operator))
        assert outcome.status == "pending", outcome
        return outcome.request_id

    return make


class Clock:
    """A module's clock (utcnow), moved by the test instead of waited for."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
def clock(monkeypatch):
    """The login throttle's clock."""
    clock = Clock(utcnow())
    monkeypatch.setattr(login_throttle, "utcnow", clock)
    return clock


@pytest.fixture
def approvals_clock(monkeypatch):
    """The clock requests are made, decided and expired by (and listed as pending by)."""
    clock = Clock(utcnow())
    monkeypatch.setattr(approvals, "utcnow", clock)
    monkeypatch.setattr(queries, "utcnow", clock)
    return clock
