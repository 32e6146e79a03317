"""Every page of the dashboard in a real browser at 1280 and 390 px: no serious or critical
axe-core violation, no console error, no sideways scrolling of the page, a screenshot of each;
and the keyboard alone finds a user, tops them up and confirms a reversal, with a visible focus
ring on every control it reaches."""
import pytest
from playwright.sync_api import expect

from tests.web import test_route_coverage as routes
from tests.web.conftest import OPENING, gold_of, make_request, world  # noqa: F401  (fixtures)
from wallet_web.web.rendering import CONTENT_SECURITY_POLICY

from .axe import blocking_violations
from .conftest import screenshot

WIDTHS = {"wide": 1280, "narrow": 390}
HEIGHT = 900

# Every GET route of the dashboard blueprints (app.url_map) is swept as a page or listed here.
NOT_PAGES = {
    "admin.index": "a redirect to the operators page",
    "audit.export_csv": "a download", "ledger.export_csv": "a download",
    "ledger.export_manifest": "a download", "bulk.result_csv": "a download",
    "explain.balance_csv": "a download",
    "bulk.progress": "an htmx fragment of the grant page",
    "users.history": "an htmx fragment of the user page (a redirect to it without htmx)",
    "users.recipient": "an htmx fragment of the user page (a redirect to it without htmx)",
    "users.recipients": "an htmx fragment of the user page (a redirect to it without htmx)",
}
PAGES = ("overview.index", "users.search", "users.new_user", "users.user", "explain.balance",
         "ledger.index", "ledger.transaction", "approvals.index", "approvals.request_page",
         "audit.index", "bulk.index", "bulk.grant_page", "admin.keys_page",
         "admin.operators_page", "admin.operator_page", "admin.policies_page",
         "admin.webhooks_page", "admin.webhook_page")
OVERFLOW = """() => {
  const limit = window.innerWidth, out = (e) => e.getBoundingClientRect().right > limit + 1;
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
    + [...e.classList].map((c) => "." + c).join("");
  return {excess: document.documentElement.scrollWidth - limit,
          outermost: [...document.body.querySelectorAll("*")]
            .filter((e) => out(e) && !out(e.parentElement)).slice(0, 5).map(name)};
}"""

# The focused element's outline, and its contrast with the first opaque background behind it
# (WCAG 1.4.11 asks 3:1 of a focus indicator).
FOCUS_RING = """() => {
  const focused = document.activeElement;
  if (focused === document.body) return null;
  const style = getComputedStyle(focused);
  const rgb = (colour) => colour.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((c) => c / 255)
    .map((c) => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  let behind = focused.parentElement;
  while (behind && (rgb(getComputedStyle(behind).backgroundColor)[3] ?? 1) === 0) {
    behind = behind.parentElement;
  }
  const back = getComputedStyle(behind || document.body).backgroundColor;
  const [lighter, darker] = [rgb(style.outlineColor), rgb(back)].map(luminance)
    .sort((a, b) => b - a);
  return {element: focused.outerHTML.slice(0, 80), style: style.outlineStyle,
          width: parseFloat(style.outlineWidth), contrast: (lighter + 0.05) / (darker + 0.05)};
}"""


def url_of(app, world, endpoint: str) -> str:
    """The page's path, its arguments filled from the world's records; the user page is the one
    of a user holding GOLD with an open hold, so that every section of it shows."""
    ids = {**routes.record_ids(world), "user_id": world.hold_user_id}
    rule = next(app.url_map.iter_rules(endpoint))
    values = {name: ids[name] for name in rule.arguments}
    return app.url_map.bind("localhost").build(endpoint, values, method="GET")


def show(page, width: str, path: str, status: int = 200):
    page.set_viewport_size({"width": WIDTHS[width], "height": HEIGHT})
    response = page.goto(path)
    assert response.status == status, (path, response.status)
    return response


def expect_no_overflow(page) -> None:
    overflow = page.evaluate(OVERFLOW)
    assert overflow["excess"] <= 0, f"the page scrolls sideways: {overflow}"


def console_errors(page, expected_status: int | None = None) -> list[str]:
    """The page's console errors, but the browser's note of the one refusal the test expects."""
    expected = f"the server responded with a status of {expected_status} "
    return [text for text in page.console_problems
            if not (expected_status and expected in text)]


def expect_accessible(page, name: str, expected_status: int | None = None) -> None:
    """The checks of every page; `expected_status` is the error the page itself answers."""
    screenshot(page, f"pages/{name}")
    problems = blocking_violations(page)
    assert problems == [], "axe found:\n" + "\n".join(problems)
    assert console_errors(page, expected_status) == []
    expect_no_overflow(page)


# ---------------------------------------------------------------- the sweep


def test_the_sweep_covers_every_page_of_the_dashboard(app):
    swept = {rule.endpoint for rule in routes.dashboard_rules(app) if "GET" in rule.methods}
    assert swept - set(NOT_PAGES) == set(PAGES), "sweep the new page (PAGES) or say why not"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("endpoint", PAGES)
def test_a_dashboard_page_is_accessible_at_each_width(app, world, log_in, endpoint, width):
    """As an admin: the role that may open every page and sees every control on it."""
    page = log_in("admin")
    response = show(page, width, url_of(app, world, endpoint))
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY  # kept on
    expect_accessible(page, f"{endpoint}-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_login_page_is_accessible(page, width):
    show(page, width, "/login")
    expect_accessible(page, f"login-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_api_docs_page_is_accessible(page, width):
    show(page, width, "/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_be_visible()  # rendered from the spec
    expect_accessible(page, f"api-docs-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_not_found_page_is_accessible(log_in, width):
    page = log_in("viewer")
    show(page, width, "/no-such-page", 404)
    expect_accessible(page, f"not-found-{width}", expected_status=404)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_forbidden_page_a_viewer_gets_for_an_admin_page_is_accessible(log_in, width):
    page = log_in("viewer")
    show(page, width, "/admin/operators", 403)
    expect_accessible(page, f"forbidden-{width}", expected_status=403)


# ---------------------------------------------------------------- the keyboard alone


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Press Tab until an element matching `selector` has focus; every element reached on the
    way shows a focus ring (an outline of at least 2 px, in 3:1 contrast with what is behind)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        ring = page.evaluate(FOCUS_RING)
        if ring is None:  # past the last control: the browser's own toolbar
            continue
        assert ring["style"] != "none" and ring["width"] >= 2 and ring["contrast"] >= 3, ring
        if page.evaluate("(selector) => document.activeElement.matches(selector)", selector):
            return
    pytest.fail(f"{limit} presses of Tab never reached {selector}")


def submit_by_keyboard(page, form: str):
    """Tab to the form's submit button, press Enter: its confirmation, which takes the focus."""
    tab_to(page, f"{form} button[type=submit]")
    page.keyboard.press("Enter")
    return page.locator(form).get_by_role("status")


def test_the_keyboard_alone_finds_a_user_and_tops_them_up(log_in, customer):
    page = log_in("operator")
    tab_to(page, "#lookup-q")
    page.keyboard.type(customer.name[:4])
    expect(page.locator(f'#lookup-results a[href$="{customer.page}"]')).to_be_visible()
    assert blocking_violations(page) == []  # with the results open
    tab_to(page, f'#lookup-results a[href$="{customer.page}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{customer.page}")
    tab_to(page, "#topup-amount")
    page.keyboard.type("25")
    tab_to(page, "#topup-reason_code")
    page.keyboard.type("Goodwill")  # a closed select picks the option its label starts with
    tab_to(page, "#topup-reason")
    page.keyboard.type("Typed, never clicked")
    confirmation = submit_by_keyboard(page, "#form-topup")
    expect(confirmation).to_contain_text(f"New GOLD balance: {OPENING + 25}.")
    expect(confirmation).to_be_focused()
    assert gold_of(customer.id) == OPENING + 25
    assert blocking_violations(page) == []  # with the confirmation and the refreshed parts
    assert page.console_problems == []


def reversal_typed_by_keyboard(log_in, customer):
    """An admin on the customer's opening transaction, its reversal's reason code and reason
    typed with the keyboard alone; the page."""
    page = log_in("admin")
    page.goto(f"/ledger/{customer.opening_id}")
    tab_to(page, "#reversal select")
    page.keyboard.type("Goodwill")
    tab_to(page, "#reversal textarea, #reversal input[name$=reason]")
    page.keyboard.type("Charged twice")
    return page


def test_the_keyboard_alone_confirms_a_reversal(log_in, customer):
    page = reversal_typed_by_keyboard(log_in, customer)
    tab_to(page, "#reversal input[type=checkbox]")
    page.keyboard.press("Space")
    confirmation = submit_by_keyboard(page, "#reversal")
    expect(confirmation).to_contain_text(f"Transaction #{customer.opening_id}")
    expect(confirmation).to_be_focused()
    assert gold_of(customer.id) == 0
    assert blocking_violations(page) == []
    assert page.console_problems == []


def test_a_refused_confirmation_step_is_announced_and_keeps_the_keyboard_on_the_form(log_in,
                                                                                     customer):
    """Sent without ticking "I confirm", the reversal is refused next to the box."""
    page = reversal_typed_by_keyboard(log_in, customer)
    page.keyboard.press("Enter")
    checkbox = page.locator("#reversal input[type=checkbox]")
    expect(checkbox).to_have_attribute("aria-invalid", "true")
    assert blocking_violations(page) == []
    tab_to(page, "#reversal input[type=checkbox]")
    assert gold_of(customer.id) == OPENING
    assert console_errors(page, 422) == []
