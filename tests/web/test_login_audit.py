"""Logins, failed logins, lockouts and logouts are in the audit trail, with the client's
address and the request id, and never with what was typed as a password."""
from sqlalchemy import select

from wallet_web.extensions import db
from wallet_web.models import AuditEvent

from .conftest import PASSWORD, Browser


def trail() -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("log%"))
                                   .order_by(AuditEvent.id)))


def log_in(browser: Browser, username: str, password: str):
    browser.get("/login")
    return browser.post("/login", {"username": username, "password": password})


def test_a_login_and_a_logout_are_recorded_with_address_and_request_id(app, make_operator):
    ann = make_operator("operator", "ann")
    browser = Browser(app)

    response = log_in(browser, "ann", PASSWORD)
    browser.get("/")
    browser.post("/logout")

    events = trail()
    assert [(e.action, e.outcome, e.actor, e.operator_id) for e in events] == [
        ("login.succeeded", "done", "operator:ann", ann.id),
        ("logout", "done", "operator:ann", ann.id)]
    assert events[0].address == "127.0.0.1"
    assert events[0].request_id == response.headers["X-Request-Id"]


def test_a_failed_login_names_a_known_operator_but_never_an_unknown_name(app, make_operator):
    ann = make_operator("operator", "ann")
    browser = Browser(app)

    log_in(browser, "ann", "wrong password")
    log_in(browser, "my-secret-typed-as-a-name", PASSWORD)

    assert [(e.action, e.outcome, e.actor, e.operator_id) for e in trail()] == [
        ("login.failed", "refused", "operator:ann", ann.id),
        ("login.failed", "refused", "unknown", None)]
    assert "my-secret" not in str([(e.actor, e.details) for e in trail()])


def test_a_lockout_is_recorded(app, make_operator):
    make_operator("operator", "ann")
    browser = Browser(app)

    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        log_in(browser, "ann", "wrong password")
    response = log_in(browser, "ann", PASSWORD)

    assert response.status_code == 429
    assert [e.action for e in trail()][-1] == "login.locked_out"
    assert [e.action for e in trail()].count("login.failed") == app.config["LOGIN_MAX_FAILURES"]
