"""Browser fixtures: the app served over real HTTP on 127.0.0.1 (werkzeug in a thread, the
test's PostgreSQL database) and Debian's Chromium driven by Playwright.

Every wait polls for what the test expects under one generous deadline, HANG_GUARD_MS: the
tests share a 2-core box with other work, so the deadline only stops a hang. It stays below the
database's idle-in-transaction timeout (60 s), which would end the test's own open read."""
import os
import threading

import pytest
from playwright.sync_api import expect, sync_playwright
from werkzeug.serving import make_server

from tests.web.conftest import customer  # noqa: F401  (a fixture: a user made for the test)
from wallet_web import ROOT_DIR, operators

HANG_GUARD_MS = 30_000
expect.set_options(timeout=HANG_GUARD_MS)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# tests/artifacts/ is ignored by git; SCREENSHOTS_DIR=docs/screenshots refreshes the README's.
SCREENSHOTS = os.environ.get("SCREENSHOTS_DIR", os.path.join(ROOT_DIR, "tests", "artifacts", "screenshots"))
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=HANG_GUARD_MS / 1000)


def _tab(chromium, base_url: str, javascript: bool = True):
    """A page in a browser context of its own (its own cookies: another person's browser) at
    1280 px, recording console errors (CSP violations included)."""
    context = chromium.new_context(base_url=base_url, viewport={"width": 1280, "height": 900},
                                   accept_downloads=True, java_script_enabled=javascript)
    context.set_default_timeout(HANG_GUARD_MS)
    tab = context.new_page()
    problems = []
    tab.on("console", lambda message: message.type == "error" and problems.append(message.text))
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.console_problems = problems
    return tab


@pytest.fixture(params=[True], ids=["js"])
def page(request, chromium, live_server):
    """A fresh browser context. Parametrize indirectly with False for a browser without
    JavaScript."""
    tab = _tab(chromium, live_server, request.param)
    yield tab
    tab.context.close()


@pytest.fixture
def open_tab(chromium, live_server):
    """open_tab() -> a page in another browser context: a second operator at the same time."""
    tabs = []

    def open_one(javascript: bool = True):
        tabs.append(_tab(chromium, live_server, javascript))
        return tabs[-1]

    yield open_one
    for tab in tabs:
        tab.context.close()


def sign_in(tab, role: str, username: str | None = None, can_approve: bool | None = None):
    """Log `tab` in as a new operator with that role (and the approver right when asked)."""
    operator = operators.create_operator(username or role, PASSWORD, role, can_approve)
    tab.goto("/login")
    tab.get_by_label("Username").fill(operator.username)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/")
    return tab


@pytest.fixture
def log_in(page):
    """log_in(role, username=role, can_approve=admins only) -> the page, logged in as a new
    operator with that role."""
    def log_page_in(role: str, username: str | None = None, can_approve: bool | None = None):
        return sign_in(page, role, username, can_approve)
    return log_page_in


def screenshot(page, name: str) -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
