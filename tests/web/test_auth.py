"""Login, logout, the session cookie and where a login leads."""
import pytest

from wallet_web import operators

from .conftest import PASSWORD


def test_the_login_page_has_labelled_inputs(anonymous):
    page = anonymous.get("/login")
    assert page.status_code == 200
    assert '<label for="username">Username</label>' in page.text
    assert '<label for="password">Password</label>' in page.text


def test_a_wrong_password_is_an_inline_error_and_no_session(anonymous, make_operator):
    make_operator("viewer", "nina")
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "nina", "password": "wrong password"})
    assert response.status_code == 401
    assert "Unknown username or wrong password." in response.text
    assert anonymous.get("/").status_code == 302


def test_empty_fields_are_errors_next_to_them(anonymous):
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "", "password": ""})
    assert response.status_code == 422
    assert 'id="username-error"' in response.text and 'id="password-error"' in response.text


def test_repeated_failures_lock_the_login(anonymous, make_operator, app):
    make_operator("operator", "otto")
    anonymous.get("/login")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        anonymous.post("/login", {"username": "otto", "password": "wrong password"})
    response = anonymous.post("/login", {"username": "otto", "password": PASSWORD})
    assert response.status_code == 429
    assert "locked" in response.text


def test_login_sets_a_hardened_session_cookie(anonymous, make_operator):
    make_operator("viewer", "pia")
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "pia", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target, lands", [
    ("/ledger?kind=topup", "/ledger?kind=topup"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example", "/"),
])
def test_login_returns_only_to_a_page_of_this_site(anonymous, make_operator, target, lands):
    make_operator("viewer", "quinn")
    anonymous.get("/login")
    response = anonymous.post(f"/login?next={target}", {"username": "quinn", "password": PASSWORD})
    assert response.headers["Location"] == lands


def test_logout_needs_a_post_with_the_csrf_token(login):
    viewer = login("viewer")
    assert viewer.get("/logout").status_code == 405
    assert viewer.post("/logout", csrf=False).status_code == 400
    assert viewer.get("/").status_code == 200
    assert viewer.post("/logout").headers["Location"] == "/login"
    assert viewer.get("/").status_code == 302


def test_disabling_an_operator_ends_their_session(login):
    viewer = login("viewer", "rita")
    operators.set_active(operators.find_operator("rita").id, False)
    response = viewer.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
