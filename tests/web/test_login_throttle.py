"""Failed logins are throttled per typed name and client address together, and per address
over all names; known and unknown names are counted and answered alike. Time is the throttle's
clock (the `clock` fixture), moved by the tests: nothing waits for the wall clock."""
from datetime import timedelta

import pytest
from werkzeug.security import generate_password_hash

from tests.ops.support import app_with
from wallet_web import operators
from wallet_web.config import Config
from wallet_web.extensions import db

from .conftest import PASSWORD, Browser

LOCKED = "Too many failed attempts"
WRONG = "Unknown username or wrong password."


def attempt(browser: Browser, username: str, password: str = "wrong password",
            address: str = "10.0.0.1", **kwargs):
    browser.get("/login")
    return browser.post("/login", {"username": username, "password": password},
                        environ_base={"REMOTE_ADDR": address}, **kwargs)


def fail(browser: Browser, username: str, times: int, **kwargs) -> list[int]:
    return [attempt(browser, username, **kwargs).status_code for _ in range(times)]


def error_of(response) -> str:
    return response.text.split('role="alert">', 1)[1].split("<", 1)[0]


def seconds(app, name: str) -> timedelta:
    return timedelta(seconds=app.config[name])


def test_the_limits_are_the_documented_ones():
    """README, docs/security.md and docs/operations.md: 5 per name, 50 per address, 900 s."""
    assert (Config.LOGIN_MAX_FAILURES, Config.LOGIN_MAX_FAILURES_PER_ADDRESS,
            Config.LOGIN_LOCKOUT_SECONDS) == (5, 50, 900)


@pytest.mark.both_backends
def test_one_failure_fewer_than_the_limit_does_not_lock(app, anonymous, make_operator):
    make_operator("viewer", "kit")
    below = app.config["LOGIN_MAX_FAILURES"] - 1
    assert fail(anonymous, "kit", below) == [401] * below
    assert attempt(anonymous, "kit", PASSWORD).status_code == 302


@pytest.mark.both_backends
def test_failures_lock_a_name_only_from_the_address_that_made_them(app, anonymous,
                                                                   make_operator):
    make_operator("admin", "otto")
    limit = app.config["LOGIN_MAX_FAILURES"]
    assert fail(anonymous, "otto", limit) == [401] * limit
    locked = attempt(anonymous, "otto", PASSWORD)
    assert locked.status_code == 429 and LOCKED in locked.text
    assert attempt(Browser(app), "otto", PASSWORD, address="10.0.0.2").status_code == 302


def test_an_unknown_name_is_counted_and_answered_like_a_known_one(app, anonymous, make_operator):
    make_operator("viewer", "nina")
    limit = app.config["LOGIN_MAX_FAILURES"]
    answers = {}
    for name in ("nina", "nobody"):
        replies = [attempt(anonymous, name) for _ in range(limit + 1)]
        answers[name] = [(reply.status_code, error_of(reply)) for reply in replies]
    assert answers["nina"] == answers["nobody"]
    assert answers["nobody"][0] == (401, WRONG) and answers["nobody"][-1][0] == 429


def test_an_unknown_name_costs_the_same_hash_work_as_a_known_one(app, make_operator):
    make_operator("viewer", "hugo")
    known = operators.find_operator("hugo").password_hash
    assert operators._dummy().split("$")[0] == known.split("$")[0]
    assert known.split("$")[0] == generate_password_hash("x").split("$")[0]


def test_an_address_is_capped_over_all_names(app, anonymous, make_operator):
    make_operator("admin", "ada")
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 3
    assert [attempt(anonymous, name).status_code for name in ("a1", "a2", "a3")] == [401] * 3
    assert attempt(anonymous, "ada", PASSWORD).status_code == 429
    assert attempt(anonymous, "ada", PASSWORD, address="10.0.0.9").status_code == 302


def log_out(browser: Browser) -> None:
    browser.get("/")  # the login cleared the session: this page carries the new CSRF token
    assert browser.post("/logout").status_code == 302


def test_success_clears_the_name_count_but_not_the_address_count(app, anonymous, make_operator):
    make_operator("viewer", "sue")
    limit = app.config["LOGIN_MAX_FAILURES"]
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 2 * (limit - 1) + 1
    for _ in range(2):
        assert fail(anonymous, "sue", limit - 1) == [401] * (limit - 1)
        assert attempt(anonymous, "sue", PASSWORD).status_code == 302
        log_out(anonymous)
    assert fail(anonymous, "sue", 1) == [401]
    assert attempt(anonymous, "sue", PASSWORD).status_code == 429


@pytest.mark.both_backends
def test_a_lock_lasts_the_configured_lockout_and_no_longer(app, anonymous, make_operator, clock):
    make_operator("viewer", "lou")
    fail(anonymous, "lou", app.config["LOGIN_MAX_FAILURES"])
    clock.advance(seconds(app, "LOGIN_LOCKOUT_SECONDS") - timedelta(seconds=1))
    assert attempt(anonymous, "lou", PASSWORD).status_code == 429
    clock.advance(timedelta(seconds=1))
    assert attempt(anonymous, "lou", PASSWORD).status_code == 302


@pytest.mark.both_backends
def test_failures_within_the_window_add_up(app, anonymous, make_operator, clock):
    make_operator("viewer", "val")
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(anonymous, "val", limit - 1)
    clock.advance(seconds(app, "LOGIN_LOCKOUT_SECONDS") - timedelta(seconds=1))
    assert fail(anonymous, "val", 1) == [401]
    assert attempt(anonymous, "val", PASSWORD).status_code == 429


@pytest.mark.both_backends
def test_failures_older_than_the_window_do_not_add_up(app, anonymous, make_operator, clock):
    make_operator("viewer", "wes")
    limit = app.config["LOGIN_MAX_FAILURES"]
    fail(anonymous, "wes", limit - 1)
    clock.advance(seconds(app, "LOGIN_LOCKOUT_SECONDS"))
    assert fail(anonymous, "wes", limit - 1) == [401] * (limit - 1)
    assert attempt(anonymous, "wes", PASSWORD).status_code == 302


def test_the_documented_set_password_command_unlocks_the_name_at_every_address(
        app, make_operator):
    """README: `flask --app wsgi operators set-password carol` ... unlocks the name."""
    make_operator("admin", "pat")
    here, there = Browser(app), Browser(app)
    for browser, address in ((here, "10.0.0.1"), (there, "10.0.0.2")):
        fail(browser, "pat", app.config["LOGIN_MAX_FAILURES"], address=address)
        assert attempt(browser, "pat", PASSWORD, address=address).status_code == 429
    result = app.test_cli_runner().invoke(args=["operators", "set-password", "PAT"],
                                          input="another good password\n")
    assert result.exit_code == 0, result.output
    for browser, address in ((here, "10.0.0.1"), (there, "10.0.0.2")):
        assert attempt(browser, "pat", "another good password", address=address).status_code == 302


@pytest.fixture
def second_app(app, database_url):
    """Another app on the same database: a second gunicorn worker."""
    other = app_with(database_url)
    yield other
    with other.app_context():
        db.engine.dispose()


def test_every_worker_sees_the_same_counts(app, anonymous, second_app):
    fail(anonymous, "ghost", app.config["LOGIN_MAX_FAILURES"])
    assert attempt(Browser(second_app), "ghost").status_code == 429


@pytest.fixture
def behind_a_proxy(app, database_url):
    proxied = app_with(database_url, PROXY_FIX_X_FOR=1)
    yield proxied
    with proxied.app_context():
        db.engine.dispose()


def forwarded_for(address: str) -> dict:
    return {"headers": {"X-Forwarded-For": address}, "address": "10.9.9.9"}


def test_behind_a_proxy_the_forwarded_address_is_the_client(behind_a_proxy, make_operator):
    make_operator("viewer", "rex")
    browser = Browser(behind_a_proxy)
    limit = behind_a_proxy.config["LOGIN_MAX_FAILURES"]
    fail(browser, "rex", limit, **forwarded_for("203.0.113.7"))
    assert attempt(browser, "rex", PASSWORD, **forwarded_for("203.0.113.7")).status_code == 429
    assert attempt(browser, "rex", PASSWORD, **forwarded_for("203.0.113.8")).status_code == 302


def test_without_the_proxy_setting_a_forwarded_address_is_ignored(app, anonymous, make_operator):
    make_operator("viewer", "ray")
    for number in range(app.config["LOGIN_MAX_FAILURES"]):
        attempt(anonymous, "ray", **forwarded_for(f"203.0.113.{number}"))
    assert attempt(anonymous, "ray", PASSWORD, **forwarded_for("198.51.100.1")).status_code == 429
