"""Promises of the dashboard that had no test of their own (docs/promises.md): a viewer reads
every page but /admin, the approvals (an operator's work) and the audit trail, every page is
sent with nosniff, and the ledger's CSV is streamed. The pages are every dashboard GET route of
app.url_map (tests/web/test_route_coverage.py)."""
from .test_route_coverage import pages


OPERATOR_FORMS = {"/users/new"}  # the form of an operator's action (creating a user), not a read
ABOVE_VIEWER_AREAS = ("/admin", "/approvals", "/bulk", "/audit")  # admin; operators (2); auditors


def refused_to_a_viewer(path: str) -> bool:
    return (any(path == area or path.startswith(area + "/") for area in ABOVE_VIEWER_AREAS)
            or path in OPERATOR_FORMS)


def test_a_viewer_opens_every_page_but_admin_approvals_bulk_audit_and_the_new_user_form(
        app, login, world):
    viewer = login("viewer")
    answers = {path: viewer.get(path).status_code for path in pages(app, world)}
    refused = {path for path in answers if refused_to_a_viewer(path)}
    assert OPERATOR_FORMS < refused
    for area in ABOVE_VIEWER_AREAS:
        assert any(path.startswith(area) for path in refused), area
    assert {path: answers[path] for path in refused if answers[path] != 403} == {}
    assert {path: status for path, status in answers.items()
            if status >= 400 and path not in refused} == {}


def test_every_dashboard_page_is_sent_with_nosniff(app, login, world):
    browsers = {"admin": login("admin"), "viewer": login("viewer", "vera")}
    missing = {(role, path) for path in pages(app, world) for role, browser in browsers.items()
               if browser.get(path).headers.get("X-Content-Type-Options") != "nosniff"}
    assert missing == set()


def test_the_dashboard_csv_is_streamed(app, login, customer):
    """Dispatched in-process: the test client would rebuild any body as a stream."""
    session = login("viewer").client.get_cookie("session")
    with app.test_request_context("/ledger/transactions.csv",
                                  headers={"Cookie": f"session={session.value}"}):
        response = app.full_dispatch_request()
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.is_streamed
        assert "opening:carla" in "".join(response.response)
