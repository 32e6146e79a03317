"""/audit: the audit trail of people for auditors and admins only, filters in the URL, keyset
pages with "load more", escaped details, and the filtered trail as CSV (itself audited)."""
import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from wallet_web import audit_events, exports, operators
from wallet_web.audit_events import Who
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, utcnow

SCRIPT = "<script>alert(1)</script>"


def note(action: str, actor: str = "operator:someone", operator_id: int | None = None,
         object_type: str | None = None, object_id=None, refused: bool = False,
         **details) -> int:
    """An event as a service records it (done, or refused); its id."""
    who = Who(actor, operator_id=operator_id)
    if refused:
        audit_events.record_refusal(action, who=who, object_type=object_type,
                                    object_id=object_id, **details)
    else:
        audit_events.record(action, who=who, object_type=object_type, object_id=object_id,
                            **details)
        db.session.commit()
    return newest_ids(1)[0]


def newest_ids(count: int | None = None, **equal) -> list[int]:
    db.session.rollback()
    query = select(AuditEvent.id).filter_by(**equal).order_by(AuditEvent.id.desc()).limit(count)
    return list(db.session.scalars(query))


def listed(html: str) -> list[str]:
    """The actions of the rows shown, in order."""
    return re.findall(r'<tr data-event="\d+" data-action="([^"]+)">', html)


def shown(html: str) -> list[int]:
    """The ids of the events shown, in order."""
    return [int(n) for n in re.findall(r'<tr data-event="(\d+)"', html)]


def row_of(html: str, action: str) -> str:
    return re.search(rf'<tr data-event="\d+" data-action="{re.escape(action)}">.*?</tr>', html,
                     re.S).group(0)


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


@pytest.fixture
def auditor(login):
    return login("auditor", "audrey")


# ---------------------------------------------------------------- who may see it


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_below_auditor_the_trail_and_its_csv_are_403_and_the_attempt_is_recorded(login, role):
    browser = login(role, f"{role}-1")
    for path in ("/audit", "/audit/events.csv"):
        response = browser.get(path)
        assert response.status_code == 403 and "Not allowed" in response.text
    assert "/audit" not in browser.get("/").text.split("<main", 1)[0]  # no link in the navigation
    denied = newest_ids(action="access.denied", actor=f"operator:{role}-1")
    assert len(denied) == 2
    assert newest_ids(action="export.downloaded") == []


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_auditors_and_admins_read_the_trail(login, role):
    browser = login(role, f"{role}-2")
    page = browser.get("/audit")
    assert page.status_code == 200
    assert 'href="/audit" aria-current="page"' in page.text
    assert listed(page.text)[0] == "login.succeeded"  # their own login, the newest event


def test_an_auditor_cannot_change_anything_an_admin_can(auditor):
    assert auditor.get("/admin/policies").status_code == 403
    assert auditor.post("/admin/reason-codes", {"code": "x", "title": "x"}).status_code == 403


# ---------------------------------------------------------------- rows and filters


def test_each_row_shows_time_action_outcome_actor_address_request_object_and_details(auditor):
    auditor.get("/audit")  # a request of its own: it has an address and a request id
    login_row = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "login.succeeded", AuditEvent.actor == "operator:audrey")).one()
    note("policy.changed", "operator:ada", object_type="asset", object_id="GOLD",
         approval_threshold=[10_000, 2_500])
    page = auditor.get("/audit").text
    row = row_of(page, "policy.changed")
    assert "operator:ada" in row and "asset GOLD" in row and "done" in row
    assert "approval_threshold:</span> 10000 → 2500" in row
    login_html = row_of(page, "login.succeeded")
    assert login_row.address and login_row.address in login_html
    assert login_row.request_id and login_row.request_id in login_html
    assert login_row.created_at.strftime("%Y-%m-%d %H:%M:%S UTC") in login_html


def test_details_and_actors_are_escaped(auditor):
    note("reason_code.added", f"operator:{SCRIPT}", object_type="reason_code",
         object_id=SCRIPT, title=SCRIPT)
    page = auditor.get("/audit").text
    assert SCRIPT not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3


def test_filters_select_by_action_outcome_actor_operator_object_and_time(auditor,
                                                                        make_operator):
    ann = make_operator("operator", "ann")
    changed = note("operator.role_changed", "operator:ann", ann.id, "operator", 42)
    refused = note("approval.refused", "operator:ann", ann.id, "request", 7, refused=True,
                   error="x")
    by_key = note("user.frozen", "api:shop", object_type="user", object_id=9)

    def ids(query: str) -> list[int]:
        response = auditor.get(f"/audit?{query}")
        assert response.status_code == 200, query
        return shown(response.text)

    assert ids("action=operator.role_changed") == [changed]
    assert ids("outcome=refused&actor=operator:") == [refused]
    assert ids("actor=API:") == [by_key]  # a prefix, whatever its case
    assert ids(f"operator_id={ann.id}") == [refused, changed]
    assert ids("object_type=operator&object_id=42") == [changed]
    assert ids("object_type=user") == [by_key]
    later = (utcnow() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"since={later}") == []
    assert set(ids(f"until={later}&operator_id={ann.id}")) == {refused, changed}


def test_invalid_filters_are_inline_errors_and_list_nothing(auditor):
    response = auditor.get("/audit?action=teleport&outcome=maybe&operator_id=999999"
                           "&since=yesterday&until=soon")
    assert response.status_code == 422
    for field in ("action", "outcome", "operator_id", "since", "until"):
        assert f'id="{field}-error"' in response.text, field
    assert listed(response.text) == []
    backwards = auditor.get("/audit?since=2030-01-02T00:00&until=2030-01-01T00:00")
    assert backwards.status_code == 422 and "later than From" in backwards.text


def test_an_htmx_filter_swaps_the_filters_and_results_only(auditor):
    note("logout", "operator:zed")
    response = auditor.htmx("GET", "/audit?action=logout")
    assert response.text.lstrip().startswith('<div id="audit">') and "<html" not in response.text
    assert listed(response.text) == ["logout"]
    assert auditor.htmx("GET", "/audit?outcome=maybe").status_code == 422


def test_the_trail_pages_newest_first_and_load_more_keeps_the_filters(auditor):
    for n in range(60):
        note("reason_code.changed", "operator:pager", object_type="reason_code",
             object_id=f"code{n}")
    first = auditor.get("/audit?actor=operator:pager")
    assert shown(first.text) == newest_ids(50, actor="operator:pager")
    more = re.search(r'hx-get="(/audit\?[^"]+)"', first.text).group(1).replace("&amp;", "&")
    assert "actor=operator" in more and "rows=1" in more and "cursor=" in more
    rest = auditor.htmx("GET", more)
    assert "<html" not in rest.text and "<table" not in rest.text
    assert shown(rest.text) == newest_ids(actor="operator:pager")[50:]
    assert "Load more" not in rest.text
    plain = re.search(r'<a href="(/audit\?cursor=[^"]+)"', first.text).group(1)
    assert shown(auditor.get(plain.replace("&amp;", "&")).text) == shown(rest.text)


def test_a_tampered_cursor_is_the_400_page(auditor):
    assert auditor.get("/audit?cursor=bogus").status_code == 400


# ---------------------------------------------------------------- CSV


def test_the_csv_is_the_filtered_trail_and_its_download_is_recorded(auditor):
    kept = note("api_key.created", "operator:kim", object_type="api_key", object_id=3,
                name="=HYPERLINK(\"x\")")
    note("api_key.revoked", "operator:kim", object_type="api_key", object_id=3)
    page = auditor.get("/audit?action=api_key.created").text
    assert 'href="/audit/events.csv?action=api_key.created"' in page
    rows = read_csv(auditor.get("/audit/events.csv?action=api_key.created"))
    assert tuple(rows[0]) == exports.AUDIT_HEADER
    assert [int(row["id"]) for row in rows] == [kept]
    assert rows[0]["actor"] == "operator:kim" and rows[0]["object_id"] == "3"
    assert rows[0]["details"] == '{"name": "=HYPERLINK(\\"x\\")"}'
    [download] = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "export.downloaded")).all()
    assert (download.actor, download.object_type, download.object_id) == (
        "operator:audrey", "export", "audit_events.csv")
    assert download.details == {"filters": {"action": "api_key.created"}}


def test_csv_cells_a_spreadsheet_could_run_are_quoted(auditor):
    note("user.frozen", "=cmd|' /C calc'!A0", object_type="user", object_id="@SUM(1)",
         reason="x")
    rows = read_csv(auditor.get("/audit/events.csv?action=user.frozen"))
    assert rows[0]["actor"] == "'=cmd|' /C calc'!A0" and rows[0]["object_id"] == "'@SUM(1)"


def test_the_csv_with_invalid_filters_goes_back_to_the_form_and_records_nothing(auditor):
    response = auditor.get("/audit/events.csv?since=yesterday")
    assert response.status_code == 302
    assert response.headers["Location"] == "/audit?since=yesterday"
    assert newest_ids(action="export.downloaded") == []


def test_the_csv_is_streamed(app, auditor):
    """Dispatched in-process: the test client would rebuild any body as a stream."""
    session = auditor.client.get_cookie("session")
    with app.test_request_context("/audit/events.csv",
                                  headers={"Cookie": f"session={session.value}"}):
        response = app.full_dispatch_request()
        assert response.status_code == 200 and response.is_streamed
        assert "login.succeeded" in "".join(response.response)


def test_operators_named_in_the_filter_are_every_operator(auditor, make_operator):
    make_operator("viewer", "zoe")
    page = auditor.get("/audit").text
    for operator in operators.list_operators():
        assert f'<option value="{operator.id}">{operator.username}</option>' in page


@pytest.mark.parametrize("chosen", [" ", "\t", "\u3000"])
def test_a_blank_operator_choice_means_anyone_not_a_500(auditor, chosen):
    note("logout", actor="operator:someone")
    response = auditor.get("/audit", query_string={"operator_id": chosen})
    assert response.status_code == 200 and "logout" in response.text
