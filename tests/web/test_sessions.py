"""Dashboard sessions live in the database: logout, a new password, disabling, idleness and age
end them for good, whatever cookie the browser still holds."""
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from wallet_web.extensions import db
from wallet_web.models import Operator, OperatorSession, utcnow

from .conftest import PASSWORD, Browser


def sessions_of(username: str) -> list[OperatorSession]:
    db.session.rollback()  # a fresh transaction, after what the requests committed
    return list(db.session.scalars(select(OperatorSession).join(Operator).where(
        Operator.username == username).order_by(OperatorSession.id)))


def age_sessions(username: str, **ages: timedelta) -> None:
    """Moves the named timestamps (created_at, last_seen_at) of the operator's sessions back."""
    db.session.rollback()
    operator_id = select(Operator.id).where(Operator.username == username).scalar_subquery()
    db.session.execute(update(OperatorSession).where(OperatorSession.operator_id == operator_id)
                       .values({column: utcnow() - age for column, age in ages.items()}))
    db.session.commit()


def with_cookie_of(app, browser: Browser) -> Browser:
    """A second client holding a copy of `browser`'s session cookie, as an attacker would."""
    copy = Browser(app)
    copy.client.set_cookie("session", browser.client.get_cookie("session").value)
    return copy


def is_signed_out(browser: Browser) -> bool:
    response = browser.get("/")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.both_backends
def test_a_cookie_captured_before_logout_opens_nothing_after_it(app, login):
    viewer = login("viewer", "sara")
    captured = with_cookie_of(app, viewer)
    assert captured.get("/").status_code == 200
    assert viewer.post("/logout").status_code == 302
    assert is_signed_out(captured)
    [ended] = sessions_of("sara")
    assert ended.ended_at is not None and ended.end_reason == "logout"


def test_the_database_keeps_only_a_hash_of_the_session_token(app, login):
    viewer = login("viewer", "sam")
    cookie = viewer.client.get_cookie("session").value
    [row] = sessions_of("sam")
    assert len(row.token_hash) == 64 and row.token_hash not in cookie
    assert row.ended_at is None and row.created_at == row.last_seen_at


def test_a_new_password_ends_every_session_of_the_operator(app, login):
    first = login("operator", "tess")
    second = Browser(app)
    second.get("/login")
    second.post("/login", {"username": "tess", "password": PASSWORD})
    result = app.test_cli_runner().invoke(args=["operators", "set-password", "tess"],
                                          input="a brand new password\n")
    assert result.exit_code == 0, result.output
    assert is_signed_out(first) and is_signed_out(second)
    assert [row.end_reason for row in sessions_of("tess")] == ["password_changed"] * 2


def test_disabling_ends_the_session_in_the_database_too(app, login):
    admin = login("admin", "boss")
    viewer = login("viewer", "vic")
    viewer_id = sessions_of("vic")[0].operator_id
    admin.get("/admin/operators")
    assert admin.post(f"/admin/operators/{viewer_id}/disable").status_code == 303
    assert admin.post(f"/admin/operators/{viewer_id}/enable").status_code == 303
    assert is_signed_out(viewer)  # enabling again does not revive the session
    assert sessions_of("vic")[0].end_reason == "disabled"


@pytest.mark.both_backends
def test_an_idle_session_ends(app, login):
    viewer = login("viewer", "ida")
    idle = app.config["SESSION_IDLE_MINUTES"]
    age_sessions("ida", last_seen_at=timedelta(minutes=idle - 1))
    assert viewer.get("/").status_code == 200
    age_sessions("ida", last_seen_at=timedelta(minutes=idle, seconds=1))
    assert is_signed_out(viewer)


@pytest.mark.both_backends
def test_a_busy_session_still_ends_at_its_lifetime(app, login):
    viewer = login("viewer", "leo")
    lifetime = app.config["SESSION_LIFETIME_HOURS"]
    age_sessions("leo", created_at=timedelta(hours=lifetime, seconds=1))
    assert is_signed_out(viewer)


@pytest.mark.both_backends
def test_last_seen_is_written_at_most_once_a_minute(app, login):
    viewer = login("viewer", "max")
    age_sessions("max", last_seen_at=timedelta(seconds=30))
    before = sessions_of("max")[0].last_seen_at
    viewer.get("/")
    assert sessions_of("max")[0].last_seen_at == before
    age_sessions("max", last_seen_at=timedelta(seconds=61))
    viewer.get("/")
    touched = sessions_of("max")[0].last_seen_at
    assert touched > utcnow() - timedelta(seconds=5)
    viewer.get("/")
    assert sessions_of("max")[0].last_seen_at == touched


@pytest.fixture
def statements(app):
    """The SQL statements the app's engine runs while the test watches."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_loading_the_signed_in_operator_is_one_query(app, login, statements):
    viewer = login("viewer", "quin")
    statements.clear()
    assert viewer.get("/login").status_code == 302  # signed in: straight to the overview
    [query] = statements
    assert "operator_sessions" in query and "JOIN operators" in query


def test_a_session_cookie_of_the_old_kind_opens_nothing(app, make_operator):
    operator = make_operator("admin", "olga")
    old = Browser(app)
    with old.client.session_transaction() as session:
        session["_user_id"] = str(operator.id)  # what Flask-Login kept before sessions
        session["_fresh"] = True
    assert is_signed_out(old)
