"""Login, logout, the session cookie and where a login leads."""
import http.cookiejar
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from werkzeug.serving import make_server

from tests.ops.support import app_with
from wallet_web import operators
from wallet_web.extensions import db

from .conftest import PASSWORD, csrf_token

COOKIE_NOT_KEPT = ("Your browser did not keep the session cookie: this dashboard needs HTTPS, "
                   "or SESSION_COOKIE_SECURE=0 for plain HTTP.")
FORM_EXPIRED = "The form expired or was not sent from this dashboard."


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


@pytest.mark.parametrize("target", [
    "/ledger?kind=topup", "/users/2", "/ledger?description=a%20b", "/users/search?q=al%C3%AF",
])
def test_login_returns_to_a_page_of_this_site(anonymous, make_operator, target):
    make_operator("viewer", "quinn")
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "quinn", "password": PASSWORD},
                              query_string={"next": target})
    assert response.headers["Location"] == target


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/", "///evil.example", "////evil.example",
    "/\\evil.example", "\\evil.example", "/\\/evil.example", "\\/evil.example",
    "/\t/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: a=b", "\r\n", "/ /evil.example",
    " /evil.example", "/\x7f", "/\x1b/evil.example", "%2F%2Fevil.example", "/%2F/evil.example",
    "/%2f%2fevil.example", "/%252F/evil.example", "/%5Cevil.example", "/%5C%5Cevil.example",
    "/%09/evil.example", "/%0d%0aSet-Cookie:%20a=b", "/%E2%80%8B/evil.example",
    "/%EF%BC%8F/evil.example", "/\uff0f/evil.example", "/\u2215\u2215evil.example",
    "/caf\u00e9", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "/javascript:alert(1)\n",
    "https:evil.example", "http:/evil.example", "data:text/html,x", "evil.example", "",
    "ledger", ".//evil.example",
])
def test_login_never_leads_off_the_site(anonymous, make_operator, target):
    make_operator("viewer", "quinn")
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "quinn", "password": PASSWORD},
                              query_string={"next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


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


class HttpBrowser:
    """Real HTTP with the standard library's cookie jar, which, like a browser, never sends a
    Secure cookie over plain HTTP. Redirects are returned, not followed."""

    class _Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), self._Keep())

    def open(self, path: str, form: dict | None = None):
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            reply = self.opener.open(self.base + path, data, timeout=60)  # only a hang
        except urllib.error.HTTPError as error:
            reply = error
        reply.text = reply.read().decode()
        return reply


@pytest.fixture
def serve(database_url):
    """serve(**settings) -> the base URL of the app with those settings, over real HTTP."""
    servers = []

    def start(**settings) -> str:
        server = make_server("127.0.0.1", 0, app_with(database_url, **settings), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        with server.app.app_context():
            db.engine.dispose()


def log_in_over_http(base: str, username: str):
    browser = HttpBrowser(base)
    page = browser.open("/login")
    form = {"username": username, "password": PASSWORD, "csrf_token": csrf_token(page.text)}
    return page, browser.open("/login", form)


def test_a_login_whose_secure_cookie_was_dropped_says_why(serve, make_operator):
    make_operator("viewer", "hal")
    page, reply = log_in_over_http(serve(SESSION_COOKIE_SECURE=True), "hal")
    assert "Secure" in page.headers["Set-Cookie"]
    assert reply.status == 400
    assert COOKIE_NOT_KEPT in reply.text and FORM_EXPIRED not in reply.text
    assert '<form method="post"' in reply.text  # the login form itself, to try again


def test_the_same_login_over_plain_http_works_without_a_secure_cookie(serve, make_operator):
    make_operator("viewer", "ian")
    page, reply = log_in_over_http(serve(SESSION_COOKIE_SECURE=False), "ian")
    assert "Secure" not in page.headers["Set-Cookie"]
    assert (reply.status, reply.headers["Location"]) == (302, "/")


def test_a_login_form_with_a_stale_token_says_the_form_expired(anonymous, make_operator):
    make_operator("viewer", "jo")
    anonymous.get("/login")
    response = anonymous.post("/login", {"username": "jo", "password": PASSWORD,
                                         "csrf_token": "stale"})
    assert response.status_code == 400
    assert FORM_EXPIRED in response.text and COOKIE_NOT_KEPT not in response.text
