"""Operator accounts: creation rules, hashed passwords, throttling, disabling, the CLI."""
from datetime import timedelta

import pytest

from wallet_web import login_throttle, operator_sessions, operators
from wallet_web.extensions import db
from wallet_web.models import LoginThrottle, Operator, utcnow

from .conftest import PASSWORD

HERE = "192.0.2.1"


def test_a_password_is_stored_only_as_a_hash(app):
    operator = operators.create_operator("Carol", PASSWORD, "operator")
    assert operator.username == "carol"
    assert PASSWORD not in operator.password_hash
    assert operator.password_hash.startswith("scrypt:")


@pytest.mark.parametrize("username, password, role, field", [
    ("", PASSWORD, "viewer", "username"),
    ("has space", PASSWORD, "viewer", "username"),
    ("x" * 65, PASSWORD, "viewer", "username"),
    ("dave", "short", "viewer", "password"),
    ("dave", PASSWORD, "root", "role"),
])
def test_invalid_operators_are_refused(app, username, password, role, field):
    with pytest.raises(operators.InvalidOperator) as refused:
        operators.create_operator(username, password, role)
    assert refused.value.details["field"] == field
    assert operators.list_operators() == []


def test_a_username_is_taken_once(app, make_operator):
    make_operator("viewer", "erin")
    with pytest.raises(operators.DuplicateOperator):
        operators.create_operator("ERIN", PASSWORD, "admin")


def test_authenticate_checks_the_password(app, make_operator):
    make_operator("viewer", "frank")
    assert operators.authenticate(" Frank", PASSWORD, HERE).username == "frank"
    assert operators.authenticate("frank", PASSWORD + "x", HERE) is None
    assert operators.authenticate("nobody", PASSWORD, HERE) is None


def test_repeated_failures_lock_the_name_here_even_for_the_right_password(app, make_operator,
                                                                         clock):
    make_operator("operator", "gina")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert operators.authenticate("gina", "wrong password", HERE) is None
    with pytest.raises(operators.LockedOut):
        operators.authenticate("GINA", PASSWORD, HERE)
    row = db.session.get(LoginThrottle, (HERE, login_throttle.name_hash("gina")))
    assert row.locked_until == clock.now + timedelta(seconds=app.config["LOGIN_LOCKOUT_SECONDS"])
    assert operators.authenticate("gina", PASSWORD, "192.0.2.2") is not None


def test_a_lock_expires_and_success_resets_the_count(app, make_operator):
    make_operator("operator", "hank")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        operators.authenticate("hank", "wrong password", HERE)
    row = db.session.get(LoginThrottle, (HERE, login_throttle.name_hash("hank")))
    row.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert operators.authenticate("hank", PASSWORD, HERE) is not None
    assert db.session.get(LoginThrottle, (HERE, login_throttle.name_hash("hank"))) is None


def test_a_disabled_operator_cannot_log_in_nor_keep_a_session(app, make_operator):
    operator = make_operator("admin", "ivy")
    token = operators.open_session(operator).session_token
    assert operators.load_signed_in(token).role == "admin"
    operators.set_active(operator.id, False)
    assert operators.authenticate("ivy", PASSWORD, HERE) is None
    assert operators.load_signed_in(token) is None
    assert operators.load_signed_in(operator_sessions.start(operator.id)) is None


def test_roles_are_ranked(app):
    viewer = operators.SignedIn(1, "v", "viewer")
    admin = operators.SignedIn(2, "a", "admin")
    assert (viewer.has_role("viewer"), viewer.has_role("operator")) == (True, False)
    assert admin.has_role("operator") and admin.label == "operator:a"


def test_cli_creates_an_operator_with_the_password_from_stdin(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["operators", "create", "judy", "--role", "operator"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert operators.authenticate("judy", PASSWORD, HERE).role == "operator"
    listed = runner.invoke(args=["operators", "list"]).output
    assert "judy\toperator\tactive" in listed


def test_cli_refuses_a_short_password_and_a_duplicate(app, make_operator):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["operators", "create", "kim"], input="short\n")
    assert short.exit_code == 1 and "at least 10" in short.output
    make_operator("viewer", "lee")
    duplicate = runner.invoke(args=["operators", "create", "lee"], input=PASSWORD + "\n")
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output


def test_cli_disables_and_sets_a_password(app, make_operator):
    make_operator("viewer", "mia")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["operators", "disable", "mia"]).exit_code == 0
    assert "mia\tviewer\tdisabled" in runner.invoke(args=["operators", "list"]).output
    missing = runner.invoke(args=["operators", "disable", "nobody"])
    assert missing.exit_code == 1
    new = runner.invoke(args=["operators", "set-password", "mia"], input="another password\n")
    assert new.exit_code == 0
    operators.set_active(operators.find_operator("mia").id, True)
    assert operators.authenticate("mia", "another password", HERE) is not None


def test_the_demo_admin_is_created_once(app):
    first = operators.ensure_demo_admin()
    password = first.rsplit(" / ", 1)[1]
    assert operators.authenticate("admin", password, HERE).role == "admin"
    assert "exists" in operators.ensure_demo_admin()
    assert db.session.query(Operator).count() == 1
