"""Bulk grants on the dashboard (Flask test client, real PostgreSQL): who may open the pages,
every upload error inline with nothing stored, the preview, submitting and four-eyes from the
pages, the progress fragment htmx polls, each row's outcome page by page, the result CSV,
CSRF on every form, and what an upload says rendered as text, never as markup."""
import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from werkzeug.security import generate_password_hash

from tests.bulk_files import csv_file, grant_file, moved_by, players, wait_for
from wallet_web import accounts, bulk, controls, operators
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, BulkGrant, Operator, utcnow

from .conftest import PASSWORD, Browser, threshold

MiB = 1024 * 1024
QUICK_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1")
REFERENCE = re.compile(r'name="reference_id" type="hidden" value="([^"]+)"')


def upload(browser: Browser, data: bytes, filename: str = "outage.csv", kind: str = "bonus",
           csrf: bool = True):
    browser.get("/bulk")
    return browser.post("/bulk", {"file": (io.BytesIO(data), filename), "kind": kind},
                        csrf=csrf)


def uploaded(browser: Browser, data: bytes, filename: str = "outage.csv") -> int:
    """The id of the draft a clean upload redirected to."""
    response = upload(browser, data, filename)
    assert response.status_code == 303, response.text
    return int(re.fullmatch(r"/bulk/(\d+)", response.headers["Location"]).group(1))


def submit(browser: Browser, grant_id: int, csrf: bool = True, **fields):
    page = browser.get(f"/bulk/{grant_id}").text
    form = {"reason_code": "compensation", "reason": "Outage of May 1st", "ticket": "SUP-1",
            "reference_id": REFERENCE.search(page).group(1), **fields}
    return browser.post(f"/bulk/{grant_id}/submit", form, csrf=csrf)


def submit_as_other(browser: Browser, grant_id: int):
    """Another operator's submission of a draft that is not theirs (the page offers no form)."""
    browser.get(f"/bulk/{grant_id}")
    return browser.post(f"/bulk/{grant_id}/submit", {
        "reason_code": "compensation", "reason": "Not mine", "reference_id": "x-1"})


def decide(browser: Browser, grant_id: int, decision: str = "approve", reason: str = "Checked"):
    browser.get(f"/bulk/{grant_id}")
    return browser.post(f"/bulk/{grant_id}/{decision}", {f"{decision}-reason": reason})


def stored() -> int:
    db.session.rollback()
    return db.session.execute(select(func.count()).select_from(BulkGrant)).scalar_one()


def lines_listed(html: str) -> list[int]:
    return [int(line) for line in re.findall(r'<tr data-line="(\d+)">', html)]


def refusal_of(html: str) -> str:
    match = re.search(r'id="refused">([^<]+)<', html)
    assert match, "no refusal shown on the grant's page"
    return match.group(1)


@pytest.fixture
def make_operator(app):
    """conftest's make_operator with a one-iteration password hash: every login below is real,
    without the 0.1 s of key stretching per operator and per login that the auth tests cover."""
    def make(role: str, username: str | None = None, can_approve: bool | None = None):
        operator = Operator(username=username or role, password_hash=QUICK_HASH, role=role,
                            is_active=True, can_approve=role == "admin" if can_approve is None
                            else can_approve)
        db.session.add(operator)
        db.session.commit()
        return operator
    return make


@pytest.fixture
def maker(login):
    return login("operator", "mia")


@pytest.fixture
def checker(login):
    """bob: an operator holding the approver right."""
    return login("operator", "bob", can_approve=True)


@pytest.fixture
def big_file(app):
    """Two players' GOLD adding up to the approval threshold: four-eyes."""
    return grant_file(players(2), amount=threshold() // 2)


# ---------------------------------------------------------------- who


def test_readers_may_not_open_bulk_grants_anonymous_visitors_log_in_and_unknown_is_404(
        login, anonymous, maker, big_file):
    grant_id = uploaded(maker, big_file)
    paths = ("/bulk", f"/bulk/{grant_id}", f"/bulk/{grant_id}/progress",
             f"/bulk/{grant_id}/result.csv")
    for role in ("viewer", "auditor"):
        reader = login(role)
        assert "Bulk grants" not in reader.get("/").text.split("<main")[0]  # not in the nav
        for path in paths:
            assert reader.get(path).status_code == 403, (role, path)
        assert upload(reader, big_file).status_code == 403
    for path in paths:
        response = anonymous.get(path)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert "Bulk grants" in maker.get("/").text.split("<main")[0]
    for path in ("/bulk/999999", "/bulk/999999/progress", "/bulk/999999/result.csv"):
        assert maker.get(path).status_code == 404
    assert stored() == 1


# ---------------------------------------------------------------- upload


def test_a_clean_upload_shows_its_preview_totals_largest_and_that_approval_is_needed(
        maker, big_file):
    response = upload(maker, big_file + b"player0,DIAMOND,3,gems\r\n", "compensation.csv")

    assert response.status_code == 303
    page = maker.get(response.headers["Location"]).text
    assert "<h1>Bulk grant #1" in page and "bulk-draft" in page
    assert "<h2 id=\"what-title\">compensation.csv</h2>" in page
    totals = re.search(r'<table class="totals">(.*?)</table>', page, re.DOTALL).group(1)
    assert re.search(r"<td>GOLD</td><td class=\"num\">2</td>.*?10,000.*?needed \(from 10,000\)",
                     totals, re.DOTALL)
    assert "not needed (below 10,000)" in totals  # DIAMOND's 3
    largest = re.search(r'<table class="largest">(.*?)</table>', page, re.DOTALL).group(1)
    assert re.findall(r'<td class="num">(\d+)</td><td><a href="/users/\d+">(\w+)</a>', largest) \
        == [("2", "player0"), ("3", "player1"), ("4", "player0")]
    assert "the whole file goes to another operator for approval" in page
    assert "Submit 3 grants" in page
    assert moved_by(bulk.get(1).file_sha256) == 0


def test_every_upload_error_is_shown_inline_and_nothing_is_stored(maker):
    """Errors of the whole file under the file input (413 for a body over the limit), errors of
    rows in a table by line; nothing is stored."""
    players(1)
    clean_row = "player0,GOLD,10,ok"
    inline = {  # the file's own error, under the file input
        b"": "the file is empty",
        b"username,asset,amount\r\nplayer0,GOLD,\xe9\r\n": "the file is not UTF-8 text (line 2",
        b"username,amount\r\nplayer0,10\r\n": "the column asset is missing",
        b"name,asset,amount\r\nplayer0,GOLD,10\r\n": "unknown column 'name'",
        b"x" * (8 * MiB + 1): "the file is larger than 8 MB",
    }
    for data, says in inline.items():
        response = upload(maker, data)
        assert response.status_code == 422, says
        assert re.search(r'<p class="error" id="file-error" role="alert">([^<]+)</p>',
                         response.text).group(1).startswith(says.replace("'", "&#39;"))
    rows = {  # the rows that cannot be granted, listed by line
        csv_file(clean_row, "player0,GOLD,=SUM(A1:A9),formula"): (
            3, "amount must be a whole number"),
        csv_file(clean_row, "@cmd,GOLD,10,formula"): (
            3, "username looks like a spreadsheet formula"),
        csv_file(clean_row, clean_row): (3, "repeats line 2"),
    }
    for data, (line, says) in rows.items():
        response = upload(maker, data)
        assert response.status_code == 422
        assert "1 of 2 rows cannot be granted. Fix them in the file and upload it again: nothing " \
               "moved." in response.text
        problem = re.search(r'<table class="problems">.*?<tbody>\s*<tr><td class="num">(\d+)</td>'
                            r'<td>([^<]+)</td>', response.text, re.DOTALL)
        assert (int(problem.group(1)), problem.group(2).startswith(says.replace("'", "&#39;"))) \
            == (line, True), problem.groups()
    no_file = maker.post("/bulk", {"kind": "bonus"})
    assert no_file.status_code == 422 and "Choose a CSV file." in no_file.text
    too_large = upload(maker, b"x" * (9 * MiB))  # the body itself: werkzeug stops reading
    assert too_large.status_code == 413
    assert re.search(r'id="file-error" role="alert">The file is larger than 8 MB: split it in '
                     r'two.</p>', too_large.text)
    assert stored() == 0


def test_a_body_over_the_limit_shows_no_bulk_grant_to_who_may_not_see_them(login, anonymous,
                                                                            maker):
    """The 413 is raised while CSRFProtect reads the form, before the blueprint's login and
    role checks: its handler must not render the page (and its recent grants) to anyone."""
    uploaded(maker, grant_file(players(1)), "secret-compensation.csv")
    submit(maker, 1)
    wait_for(1)
    viewer = login("viewer")
    for browser in (anonymous, viewer):
        response = upload(browser, b"x" * (9 * MiB))
        assert response.status_code in (302, 403, 413)
        assert "secret-compensation.csv" not in response.text
        assert 'id="upload"' not in response.text


def test_every_form_needs_the_csrf_token(maker, checker, big_file):
    assert upload(maker, big_file, csrf=False).status_code == 400
    assert stored() == 0
    grant_id = uploaded(maker, big_file)
    assert submit(maker, grant_id, csrf=False).status_code == 400
    assert bulk.get(grant_id).status == "draft"
    submit(maker, grant_id)
    for decision in ("approve", "reject"):
        checker.get(f"/bulk/{grant_id}")
        response = checker.post(f"/bulk/{grant_id}/{decision}",
                                {f"{decision}-reason": "No token"}, csrf=False)
        assert response.status_code == 400
    assert bulk.get(grant_id).status == "pending"
    assert moved_by(bulk.get(grant_id).file_sha256) == 0


# ---------------------------------------------------------------- submitting


def test_below_the_thresholds_the_grant_posts_and_the_page_shows_progress_and_outcomes(maker):
    users = players(3)
    grant_id = uploaded(maker, grant_file(users, amount=100))
    assert "the rows are posted at once and count against your daily limit" in maker.get(
        f"/bulk/{grant_id}").text

    response = submit(maker, grant_id)

    assert response.status_code == 303 and response.headers["Location"] == f"/bulk/{grant_id}"
    grant = wait_for(grant_id)
    page = maker.get(f"/bulk/{grant_id}").text
    assert f"Bulk grant #{grant_id} is being posted." in page  # the flash
    assert re.search(r"3 of 3 rows done\s+· 3 posted · 0 already posted · 0 refused", page)
    assert "hx-get" not in page.split('id="progress"')[1].split(">")[0]  # no more polling
    assert lines_listed(page) == [2, 3, 4]
    tx_ids = [row.transaction_id for row in bulk.outcomes(grant_id)]
    for tx_id in tx_ids:
        assert f'<a href="/ledger/{tx_id}">#{tx_id}</a>' in page
    assert page.count('class="status outcome-posted"') == 3
    assert '<dd class="mono">compensation</dd>' in page and "SUP-1" in page
    assert moved_by(grant.file_sha256) == 3


def test_the_progress_fragment_polls_while_posting_and_asks_for_a_reload_once_done(maker):
    grant_id = uploaded(maker, grant_file(players(2)))
    with db.engine.begin() as conn:  # a poster at work elsewhere: fresh heartbeat, no rows yet
        conn.execute(update(BulkGrant.__table__).where(BulkGrant.id == grant_id).values(
            status="posting", submitted_at=utcnow(), heartbeat_at=utcnow(),
            reason_code="compensation", description="Outage"))

    posting = maker.htmx("GET", f"/bulk/{grant_id}/progress")

    assert posting.status_code == 200 and "HX-Refresh" not in posting.headers
    assert posting.text.startswith(f'<div id="progress" class="progress" hx-get="/bulk/'
                                   f'{grant_id}/progress" hx-trigger="every 1s"')
    assert "0 of 2 rows done" in posting.text and "you may close this tab" in posting.text
    page = maker.get(f"/bulk/{grant_id}").text
    assert page.count('class="status outcome-waiting"') == 2
    assert bulk.run(grant_id) is False  # the heartbeat is fresh: the other poster goes on
    with db.engine.begin() as conn:
        conn.execute(update(BulkGrant.__table__).where(BulkGrant.id == grant_id).values(
            heartbeat_at=None))
    assert bulk.run(grant_id) is True

    done = maker.htmx("GET", f"/bulk/{grant_id}/progress")

    assert done.headers["HX-Refresh"] == "true"
    assert "hx-get" not in done.text and "2 of 2 rows done" in done.text


def test_a_submission_is_refused_inline_with_what_to_fix(maker, login):
    controls.set_operator_limit(operators.find_operator("mia").id, "GOLD", 100)
    grant_id = uploaded(maker, grant_file(players(2), amount=60))  # 120: below the threshold

    no_reason = submit(maker, grant_id, reason="")
    assert no_reason.status_code == 422
    assert re.search(r'id="reason-error">Say why', no_reason.text)
    no_code = submit(maker, grant_id, reason_code="")
    assert no_code.status_code == 422 and 'id="reason_code-error"' in no_code.text
    bad_ticket = submit(maker, grant_id, ticket="not a ticket!")
    assert bad_ticket.status_code == 422
    assert 'id="ticket-error">Enter a ticket id' in bad_ticket.text
    over = submit(maker, grant_id)
    assert over.status_code == 422
    assert "Above your daily GOLD limit: 100 of 100 left today (UTC)." in over.text
    other = login("operator", "olga")
    assert "only they can submit it" in other.get(f"/bulk/{grant_id}").text
    assert submit_as_other(other, grant_id).status_code == 403
    assert bulk.get(grant_id).status == "draft"
    assert moved_by(bulk.get(grant_id).file_sha256) == 0


def test_the_same_file_again_is_warned_on_its_preview_and_refused_on_submit(maker):
    data = grant_file(players(2), amount=100)
    first = uploaded(maker, data)
    submit(maker, first)
    wait_for(first)

    second = uploaded(maker, data, "renamed.csv")

    page = maker.get(f"/bulk/{second}").text
    assert re.search(rf'This file was already granted as\s+<a href="/bulk/{first}">bulk grant '
                     rf'#{first}</a> \(done, ', page)
    assert "Submitting it again is refused: nothing would move twice." in page
    response = submit(maker, second)
    assert response.status_code == 409
    assert refusal_of(response.text) == (f"This file was already submitted as bulk grant "
                                         f"#{first} (done): nothing was sent again.")
    assert bulk.get(second).status == "draft" and moved_by(bulk.get(first).file_sha256) == 2


# ---------------------------------------------------------------- four eyes


def test_a_grant_at_the_threshold_waits_for_another_approver_who_approves_it_once(
        maker, checker, login, big_file):
    grant_id = uploaded(maker, big_file, "may-outage.csv")

    response = submit(maker, grant_id)

    assert response.status_code == 303
    page = maker.get(f"/bulk/{grant_id}").text
    assert f"Bulk grant #{grant_id} sent for approval: another operator must approve it." in page
    assert "Your bulk grant: another operator must approve it." in page
    assert 'id="form-approve"' not in page
    queue = checker.get("/approvals").text
    waiting = re.search(r'<section class="card" id="bulk-waiting".*?</section>', queue,
                        re.DOTALL).group(0)
    assert f'<a href="/bulk/{grant_id}">Bulk grant #{grant_id}</a></td><td>may-outage.csv' \
        in waiting
    for shown in ("compensation", "Outage of May 1st", "operator:mia"):
        assert shown in waiting
    assert re.search(r'<span class="badge" aria-label="1 waiting for approval">1</span>', queue)
    assert 'class="badge"' not in login("operator", "olga").get("/").text  # no approver right
    assert moved_by(bulk.get(grant_id).file_sha256) == 0
    page = checker.get(f"/bulk/{grant_id}").text
    assert 'id="form-approve"' in page and 'id="form-reject"' in page

    approved = decide(checker, grant_id, "approve", "Outage confirmed")

    assert approved.status_code == 303 and approved.headers["Location"] == f"/bulk/{grant_id}"
    grant = wait_for(grant_id)
    assert (grant.checker, grant.posted) == ("operator:bob", 2)
    page = checker.get(f"/bulk/{grant_id}").text
    assert f"Bulk grant #{grant_id} approved: it is being posted." in page
    assert "operator:bob: Outage confirmed" in page and "2 of 2 rows done" in page
    again = decide(checker, grant_id, "approve", "Again")
    assert again.status_code == 409
    assert refusal_of(again.text) == f"Bulk grant #{grant_id} is done: it cannot be approved."
    assert moved_by(grant.file_sha256) == 2
    assert 'class="badge"' not in checker.get("/").text
    assert 'id="bulk-waiting"' not in checker.get("/approvals").text


def test_only_another_approver_decides_and_a_rejection_moves_nothing(login, checker, big_file):
    maker = login("operator", "mia", can_approve=True)  # an approver, of others' grants
    grant_id = uploaded(maker, big_file)
    submit(maker, grant_id)
    assert 'class="badge"' not in maker.get("/").text  # nothing of theirs to decide

    own = decide(maker, grant_id, "approve", "Myself")

    assert own.status_code == 403
    assert refusal_of(own.text) == "You made this request: another operator must decide it."
    olga = login("operator", "olga")
    assert "Waiting for an operator with the approver right." in olga.get(f"/bulk/{grant_id}").text
    for decision in ("approve", "reject"):
        response = decide(olga, grant_id, decision, "Let me")
        assert response.status_code == 403 and "This needs the approver right." in response.text
    assert bulk.get(grant_id).status == "pending"

    rejected = decide(checker, grant_id, "reject", "No ticket for this")

    assert rejected.status_code == 303
    page = checker.get(f"/bulk/{grant_id}").text
    assert f"Bulk grant #{grant_id} rejected: nothing moved." in page
    assert "Rejected by operator:bob: nothing moved." in page
    assert moved_by(bulk.get(grant_id).file_sha256) == 0


def test_a_decision_needs_a_reason_and_an_expired_grant_cannot_be_decided(maker, checker,
                                                                          big_file):
    grant_id = uploaded(maker, big_file)
    submit(maker, grant_id)
    blank = decide(checker, grant_id, "approve", "  ")
    assert blank.status_code == 422 and re.search(r'id="approve-reason-error">Say why', blank.text)
    with db.engine.begin() as conn:
        conn.execute(update(BulkGrant.__table__).where(BulkGrant.id == grant_id).values(
            expires_at=utcnow() - timedelta(seconds=1)))

    late = decide(checker, grant_id, "approve", "Too late")

    assert late.status_code == 409
    assert refusal_of(late.text) == f"Bulk grant #{grant_id} is expired: it cannot be approved."
    assert "Expired without a decision: nothing moved." in checker.get(f"/bulk/{grant_id}").text
    assert moved_by(bulk.get(grant_id).file_sha256) == 0


# ---------------------------------------------------------------- outcomes


def test_the_outcomes_page_by_200_lines_and_filter_the_refused_ones(maker):
    users = players(450)
    grant_id = uploaded(maker, grant_file(users, amount=1))
    for user in (users[10], users[300], users[449]):  # closed after the preview: refused
        accounts.change_status(user.id, "close", "Left the game")
    submit(maker, grant_id)
    grant = wait_for(grant_id)
    assert (grant.posted, grant.refused) == (447, 3)

    first = maker.get(f"/bulk/{grant_id}").text
    assert lines_listed(first) == list(range(2, 202))
    assert f'href="/bulk/{grant_id}?after=201#outcomes">Next 200 rows</a>' in first
    second = maker.get(f"/bulk/{grant_id}?after=201").text
    assert lines_listed(second) == list(range(202, 402))
    last = maker.get(f"/bulk/{grant_id}?after=401").text
    assert lines_listed(last) == list(range(402, 452)) and "Next 200 rows" not in last
    refused = maker.get(f"/bulk/{grant_id}?refused=1").text
    assert lines_listed(refused) == [12, 302, 451]
    assert refused.count('class="status outcome-refused"') == 3
    assert "closed" in re.search(r'<tr data-line="12">.*?</tr>', refused, re.DOTALL).group(0)
    assert lines_listed(maker.get(f"/bulk/{grant_id}?refused=1&after=12").text) == [302, 451]
    for junk in ("junk", "\u00b2", "9" * 25, "-5"):  # a superscript two passes str.isdigit()
        assert lines_listed(maker.get(f"/bulk/{grant_id}?after={junk}").text)[:1] == [2]


def test_the_result_csv_lists_every_row_with_its_outcome(maker):
    users = players(3)
    data = csv_file(f"{users[0].name},GOLD,10,Outage", f"{users[1].name},GOLD,20,",
                    f"{users[2].name},GOLD,30,Outage")
    grant_id = uploaded(maker, data)
    accounts.change_status(users[1].id, "close", "Left the game")
    submit(maker, grant_id)
    wait_for(grant_id)

    response = maker.get(f"/bulk/{grant_id}/result.csv")

    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f"attachment; filename=bulk-grant-{grant_id}-result.csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["line", "user", "user_id", "asset", "amount", "reason", "outcome",
                       "transaction_id", "error", "message"]
    tx = {row.line: row.transaction_id for row in bulk.outcomes(grant_id)}
    assert rows[1] == ["2", users[0].name, str(users[0].id), "GOLD", "10", "Outage", "posted",
                       str(tx[2]), "", ""]
    assert rows[2][:8] == ["3", users[1].name, str(users[1].id), "GOLD", "20", "", "refused", ""]
    assert rows[2][8] and "closed" in rows[2][9]
    assert rows[3][6:8] == ["posted", str(tx[4])] and len(rows) == 4
    db.session.rollback()
    [event] = db.session.scalars(select(AuditEvent).filter_by(action="export.downloaded")).all()
    assert (event.object_id, event.details["filters"]) == ("bulk_grant.csv",
                                                           {"grant_id": grant_id})


def test_a_hostile_filename_and_reasons_are_shown_as_text(maker, checker):
    users = players(2)
    data = csv_file(f"{users[0].name},GOLD,6000,<img src=x onerror=alert(1)>",
                    f"{users[1].name},GOLD,6000,\"<script>alert('row')</script>\"")
    grant_id = uploaded(maker, data, "<svg onload=alert('file')>.csv")
    submit(maker, grant_id, reason="<script>alert('reason')</script>", ticket="SUP-1")

    pages = [maker.get(f"/bulk/{grant_id}").text, maker.get("/bulk").text,
             checker.get(f"/bulk/{grant_id}").text, checker.get("/approvals").text]

    for page in pages:
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "<svg" not in page and "&lt;svg onload=alert(&#39;file&#39;)&gt;.csv" in page
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[0]  # the largest amounts' reasons
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt;" in pages[3]
