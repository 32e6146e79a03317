"""Explain a balance: a wallet over a period, from the opening balance through each posting and
its running balance to the closing balance, whose numbers agree with `ledger verify` and with
the wallet's balance; printable, and as CSV."""
import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import insert, select

from wallet_web import api_keys, approvals, audit, controls, exports, ledger, operators, queries
from wallet_web.approvals import Intent
from wallet_web.extensions import db
from wallet_web.models import AuditEvent, Posting, Transaction, utcnow
from wallet_web.web import explain

from .conftest import OPENING

TICKET = "https://tickets.example.com/SUP-77"


def exact(moment: datetime) -> str:
    """A posting's own time as the form reads it, to the microsecond."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def number(text: str) -> int:
    return int(text.replace(",", "").replace("\u2212", "-").replace("+", ""))


def summary(html: str) -> dict[str, int]:
    return {name: number(re.search(rf'<dd class="{name}"><span class="money">([^&]+)&', html)
                         .group(1)) for name in ("opening", "closing")}


def rows(html: str) -> list[dict]:
    """The postings shown: id, amount and running balance as printed."""
    found = re.findall(r'<tr data-posting="(\d+)">.*?<td class="num">([^<]+)</td>\s*'
                       r'<td class="num balance">([\d,]+)', html, re.S)
    return [{"id": int(posting), "amount": number(amount), "balance": number(balance)}
            for posting, amount, balance in found]


def row_html(html: str, posting_id: int) -> str:
    return re.search(rf'<tr data-posting="{posting_id}">.*?</tr>', html, re.S).group(0)


def checks(html: str) -> dict[str, str]:
    """Each check shown on the page, ok or problem."""
    return dict(re.findall(r'data-check="([a-z-]+)" data-result="(ok|problem)"', html))


def stored_postings(account_id: int, from_id: int = 0) -> list[tuple[int, int, int]]:
    db.session.rollback()
    query = (select(Posting.id, Posting.amount, Posting.balance_after)
             .where(Posting.account_id == account_id, Posting.id >= from_id)
             .order_by(Posting.id))
    return [tuple(row) for row in db.session.execute(query)]


def leg_of(receipt, account_id: int) -> Posting:
    db.session.rollback()
    return db.session.scalars(select(Posting).where(Posting.transaction_id == receipt.id,
                                                    Posting.account_id == account_id)).one()


def read_csv(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))


@dataclass(frozen=True)
class History:
    user_id: int
    wallet: int
    spend: object  # the receipt where the period starts
    transfer_in: object
    approved: object
    ticketed: object


@pytest.fixture
def history(customer, make_user, wallet_of) -> History:
    """carla's GOLD: the opening top-up, an API top-up, a spend, transfers out and in, a
    dashboard top-up with a ticket, one above the threshold approved by a checker, a reversal
    of the spend and a bonus."""
    controls.set_policy("GOLD", 1_000, 100_000)
    bob = make_user(balance=500, name="bob-x")
    key, _ = api_keys.create_key("shop", "write")
    maker = operators.create_operator("mia", "correct horse battery", "operator")
    checker = operators.create_operator("cole", "correct horse battery", "operator", True)
    as_maker = operators.SignedIn(maker.id, maker.username, maker.role)
    as_checker = operators.SignedIn(checker.id, checker.username, checker.role, "", True)
    ledger.topup(customer.id, "GOLD", 900, "api-topup",
                 actor=ledger.Actor("api:shop", api_key_id=key.id))
    spend = ledger.spend(customer.id, "GOLD", 120, "shop-spend", description="Sword")
    ledger.transfer(customer.id, bob, "GOLD", 30, "to-bob")
    transfer_in = ledger.transfer(bob, customer.id, "GOLD", 45, "from-bob")
    ticketed = approvals.submit(Intent("topup", "web-ticketed", "compensation", "Outage",
                                       "GOLD", 70, ticket=TICKET, user_id=customer.id),
                                as_maker).receipt
    pending = approvals.submit(Intent("topup", "web-big", "goodwill", "Big goodwill", "GOLD",
                                      1_500, ticket="SUP-9", user_id=customer.id), as_maker)
    approved = approvals.approve(pending.request_id, as_checker, "Checked the ticket")
    ledger.reverse(spend.id, "undo-spend", description="Refund the sword")
    ledger.bonus(customer.id, "GOLD", 5, "bonus-1")
    return History(customer.id, wallet_of(customer.id), spend, transfer_in, approved, ticketed)


# ---------------------------------------------------------------- the numbers


def test_a_period_from_mid_history_explains_the_balance_now(login, history):
    start = leg_of(history.spend, history.wallet)
    page = login("viewer").get(f"/users/{history.user_id}/explain?asset=GOLD"
                               f"&since={exact(start.created_at)}")
    assert page.status_code == 200
    before_start = stored_postings(history.wallet)[:2]  # the opening top-up and the API one
    assert summary(page.text)["opening"] == before_start[-1][2] == OPENING + 900
    period = stored_postings(history.wallet, from_id=start.id)
    assert [(row["id"], row["amount"], row["balance"]) for row in rows(page.text)] == period
    balance_now = queries.account_balance(history.wallet)
    assert summary(page.text)["closing"] == period[-1][2] == balance_now
    assert balance_now == OPENING + 900 - 120 - 30 + 45 + 70 + 1_500 + 120 + 5
    assert checks(page.text) == {"adds-up": "ok", "balance-now": "ok"}
    assert audit.verify().ok


def test_the_totals_per_kind_add_up_to_the_period(login, history):
    start = leg_of(history.spend, history.wallet)
    page = login("viewer").get(f"/users/{history.user_id}/explain?asset=GOLD"
                               f"&since={exact(start.created_at)}").text
    totals = dict(re.findall(r'<tr data-kind="([a-z]+)">.*?<td class="num net">([^<]+)</td>',
                             page, re.S))
    assert {kind: number(net) for kind, net in totals.items()} == {
        "bonus": 5, "reversal": 120, "spend": -120, "topup": 1_570, "transfer": 15}
    transfers = re.search(r'<tr data-kind="transfer">.*?</tr>', page, re.S).group(0)
    assert re.findall(r'<td class="num">([\d,]+)</td>', transfers) == ["2", "45", "30"]


def test_each_posting_names_its_reason_code_ticket_maker_and_checker(login, history):
    page = login("viewer").get(f"/users/{history.user_id}/explain?asset=GOLD").text
    approved = row_html(page, leg_of(history.approved, history.wallet).id)
    assert "goodwill" in approved and "<td>SUP-9</td>" in approved  # an id: no link
    assert "operator:mia" in approved and "operator:cole" in approved
    ticketed = row_html(page, leg_of(history.ticketed, history.wallet).id)
    assert f'<a href="{TICKET}" rel="noopener noreferrer">{TICKET}</a>' in ticketed
    assert "compensation" in ticketed and "Outage" in ticketed
    api = row_html(page, stored_postings(history.wallet)[1][0])
    assert "api:shop" in api
    tx = leg_of(history.transfer_in, history.wallet).transaction_id
    assert f'<a href="/ledger/{tx}">#{tx}</a>' in row_html(
        page, leg_of(history.transfer_in, history.wallet).id)


def test_the_whole_history_opens_at_zero(login, history):
    page = login("viewer").get(f"/users/{history.user_id}/explain").text  # GOLD by default
    assert summary(page)["opening"] == 0
    assert [row["balance"] for row in rows(page)] == [b for _, _, b in
                                                      stored_postings(history.wallet)]
    assert checks(page) == {"adds-up": "ok", "balance-now": "ok"}


def test_with_until_the_closing_balance_is_the_one_before_that_moment(login, history):
    end = leg_of(history.transfer_in, history.wallet)
    page = login("viewer").get(f"/users/{history.user_id}/explain?asset=GOLD"
                               f"&until={exact(end.created_at)}").text
    before_end = [p for p in stored_postings(history.wallet) if p[0] < end.id]
    assert summary(page)["closing"] == before_end[-1][2]
    assert [row["id"] for row in rows(page)] == [p[0] for p in before_end]
    assert checks(page) == {"adds-up": "ok"}  # no "balance now" check for a past period


def test_a_period_without_postings_opens_and_closes_at_the_same_balance(login, history):
    page = login("viewer").get(f"/users/{history.user_id}/explain?since=2999-01-01T00:00").text
    balance = queries.account_balance(history.wallet)
    assert summary(page) == {"opening": balance, "closing": balance}
    assert rows(page) == [] and "No postings in this period." in page


def test_another_assets_wallet_is_explained_on_its_own(login, history):
    ledger.topup(history.user_id, "DIAMOND", 7, "diamond-1")
    page = login("viewer").get(f"/users/{history.user_id}/explain?asset=DIAMOND").text
    assert summary(page) == {"opening": 0, "closing": 7}
    assert [row["amount"] for row in rows(page)] == [7]


def test_a_broken_chain_shows_on_the_page_as_ledger_verify_reports_it(login, customer,
                                                                     wallet_of):
    wallet = wallet_of(customer.id)
    with db.engine.begin() as conn:  # a posting the ledger service would never write
        tx_id = conn.execute(insert(Transaction).values(
            kind="adjustment", reference_id="forged", fingerprint="x", description="forged",
            actor="system", created_at=utcnow()).returning(Transaction.id)).scalar_one()
        conn.execute(insert(Posting).values(transaction_id=tx_id, account_id=wallet, amount=5,
                                            balance_after=999, created_at=utcnow()))
    assert not audit.verify().ok
    page = login("viewer").get(f"{customer.page}/explain").text
    assert checks(page) == {"adds-up": "problem", "balance-now": "problem"}
    assert "(stored 999)" in page


# ---------------------------------------------------------------- the page


def test_any_role_may_read_it_and_the_page_is_printable(login, customer):
    for role in ("viewer", "auditor", "operator", "admin"):
        page = login(role, f"{role}-e").get(f"{customer.page}/explain")
        assert page.status_code == 200, role
    assert '<link rel="stylesheet" href="/static/css/print.css" media="print">' in page.text
    assert f'href="/users/{customer.id}/explain.csv"' in page.text


def test_the_print_stylesheet_hides_navigation_and_forms(app):
    with app.test_client() as client:
        css = client.get("/static/css/print.css").get_data(as_text=True)
    hidden = re.search(r"([^{}]+)\{\s*display:\s*none", css).group(1)
    for selector in (".topbar", "form", ".button"):
        assert selector in hidden


@pytest.mark.parametrize("query, field", [
    ("asset=NOPE", "asset"),
    ("since=yesterday", "since"),
    ("until=2025-13-01T00:00", "until"),
    ("since=2025-02-01T00:00&until=2025-01-01T00:00", "until"),
])
def test_invalid_fields_are_an_inline_422(login, customer, query, field):
    response = login("viewer").get(f"{customer.page}/explain?{query}")
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text and "Fix the fields above" in response.text
    assert rows(response.text) == []


def test_an_unknown_user_is_404(login):
    assert login("viewer").get("/users/999999999/explain").status_code == 404


def test_an_htmx_request_swaps_the_statement_only(login, customer):
    response = login("viewer").htmx("GET", f"{customer.page}/explain?asset=GOLD")
    assert response.text.lstrip().startswith('<div id="explain">')
    assert "<html" not in response.text and summary(response.text)["closing"] == OPENING


def test_beyond_the_cap_the_page_says_so_and_points_to_the_csv(login, customer, monkeypatch):
    for n in range(4):
        ledger.topup(customer.id, "GOLD", 1, f"many-{n}")
    monkeypatch.setattr(explain, "LINES_SHOWN", 3)
    page = login("viewer").get(f"{customer.page}/explain").text
    assert len(rows(page)) == 3
    assert "This period has 5 postings: the page shows the first 3." in page
    assert summary(page)["closing"] == OPENING + 4  # the totals and closing cover them all
    assert checks(page) == {"adds-up": "ok", "balance-now": "ok"}


# ---------------------------------------------------------------- CSV


def test_the_csv_holds_the_same_numbers_and_its_download_is_recorded(login, history):
    start = leg_of(history.spend, history.wallet)
    since = exact(start.created_at)
    viewer = login("viewer", "vic")
    page = viewer.get(f"/users/{history.user_id}/explain?asset=GOLD&since={since}").text
    lines = read_csv(viewer.get(f"/users/{history.user_id}/explain.csv?asset=GOLD"
                                f"&since={since}"))
    assert tuple(lines[0]) == exports.STATEMENT_HEADER
    assert [line["entry"] for line in (lines[0], lines[-1])] == ["opening", "closing"]
    assert int(lines[0]["balance"]) == summary(page)["opening"]
    assert int(lines[-1]["balance"]) == summary(page)["closing"]
    postings = lines[1:-1]
    assert [(int(p["posting_id"]), int(p["amount"]), int(p["balance"])) for p in postings] == \
        [(row["id"], row["amount"], row["balance"]) for row in rows(page)]
    approved = next(p for p in postings if p["checker"])
    assert (approved["reason_code"], approved["ticket"], approved["maker"],
            approved["checker"]) == ("goodwill", "SUP-9", "operator:mia", "operator:cole")
    assert int(lines[0]["balance"]) + int(lines[-1]["amount"]) == int(lines[-1]["balance"])
    [download] = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "export.downloaded")).all()
    assert (download.actor, download.object_id) == ("operator:vic", "statement.csv")
    assert download.details["filters"]["asset"] == "GOLD"
    assert download.details["filters"]["user_id"] == history.user_id
    assert download.details["filters"]["since"].startswith(since[:19])


def test_the_csv_is_streamed(app, login, customer):
    """Dispatched in-process: the test client would rebuild any body as a stream."""
    session = login("viewer").client.get_cookie("session")
    with app.test_request_context(f"{customer.page}/explain.csv",
                                  headers={"Cookie": f"session={session.value}"}):
        response = app.full_dispatch_request()
        assert response.status_code == 200 and response.is_streamed
        assert "opening:carla" in "".join(response.response)


def test_the_csv_neutralises_formulas(login, customer):
    ledger.topup(customer.id, "GOLD", 1, "=cmd", description="@SUM(1)")
    lines = read_csv(login("viewer").get(f"{customer.page}/explain.csv"))
    formula = next(line for line in lines if line["reference_id"].endswith("=cmd"))
    assert (formula["reference_id"], formula["description"]) == ("'=cmd", "'@SUM(1)")


def test_the_csv_with_invalid_fields_goes_back_to_the_page(login, customer):
    response = login("viewer").get(f"{customer.page}/explain.csv?asset=NOPE")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{customer.page}/explain?asset=NOPE"
