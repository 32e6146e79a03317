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


@pytest.fixture(params=[True], ids=["js"])
def page(request, chromium, live_server):
    """A fresh browser context at 1280 px; records console errors (CSP violations included).
    Parametrize indirectly with False for a browser without JavaScript."""
    context = chromium.new_context(base_url=live_server, viewport={"width": 1280, "height": 900},
                                   accept_downloads=True, java_script_enabled=request.param)
    context.set_default_timeout(HANG_GUARD_MS)
    tab = context.new_page()
    problems = []
    tab.on("console", lambda message: message.type == "error" and problems.append(message.text))
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.console_problems = problems
    yield tab
    context.close()


@pytest.fixture
def log_in(page):
    """log_in(role) -> the page, logged in as a new operator with that role."""
    def sign_in(role: str, username: str | None = None):
        operator = operators.create_operator(username or role, PASSWORD, role)
        page.goto("/login")
        page.get_by_label("Username").fill(operator.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/")
        return page
    return sign_in


def screenshot(page, name: str) -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
