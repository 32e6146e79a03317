"""/admin/policies: each asset's approval threshold and operator daily limit (edited by admins,
every change audited, a bad value changes nothing), and the reason codes (add, retire, restore)."""
import re

import pytest
from sqlalchemy import select

from wallet_web import controls
from wallet_web.extensions import db
from wallet_web.models import AuditEvent

POLICIES = "/admin/policies"


def policy_form(asset: str, threshold: str, limit: str) -> dict:
    return {"asset": asset, f"{asset}-approval_threshold": threshold,
            f"{asset}-operator_daily_limit": limit}


def value_of(html: str, name: str) -> str:
    return re.search(rf'<input [^>]*name="{name}"[^>]* value="([^"]*)"', html).group(1)


def policy_of(asset: str) -> tuple[int, int]:
    db.session.rollback()  # what the requests committed
    policy = controls.policy_for(asset)
    return policy.approval_threshold, policy.operator_daily_limit


def events(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


def reason_code(code: str):
    db.session.rollback()
    return next((row for row in controls.list_reason_codes(active_only=False) if row.code == code),
                None)


# ---------------------------------------------------------------- policies


def test_the_page_lists_every_asset_with_its_policy_and_who_changed_it(login):
    controls.set_policy("DIAMOND", 300, 900)
    page = login("admin").get(POLICIES)
    assert page.status_code == 200
    for asset in ("GOLD", "DIAMOND", "LOYALTY"):
        assert f'id="policy-{asset}"' in page.text
    assert value_of(page.text, "DIAMOND-approval_threshold") == "300"
    assert value_of(page.text, "DIAMOND-operator_daily_limit") == "900"
    assert "Changed by cli:" in page.text  # set_policy above ran outside a request
    assert 'aria-current="page">Policies</a>' in page.text


def test_an_admin_changes_a_policy_and_the_change_is_audited(login):
    admin = login("admin", "ada")
    admin.get(POLICIES)
    before = policy_of("GOLD")
    response = admin.post(POLICIES, policy_form("GOLD", "2,500", "40000"))
    assert response.status_code == 303
    assert policy_of("GOLD") == (2500, 40000)
    assert "Policy of GOLD saved." in admin.get(POLICIES).text
    [event] = events("policy.changed")
    assert (event.actor, event.object_type, event.object_id) == ("operator:ada", "asset", "GOLD")
    assert event.details == {"approval_threshold": [before[0], 2500],
                             "operator_daily_limit": [before[1], 40000]}
    assert "Changed by operator:ada" in admin.get(POLICIES).text


def test_an_htmx_edit_swaps_that_assets_form_only(login):
    admin = login("admin")
    admin.get(POLICIES)
    saved = admin.htmx("POST", POLICIES, policy_form("LOYALTY", "70", "700"))
    assert saved.status_code == 200
    assert saved.text.lstrip().startswith('<form id="policy-LOYALTY"') and "<html" not in saved.text
    assert "Saved." in saved.text and policy_of("LOYALTY") == (70, 700)
    refused = admin.htmx("POST", POLICIES, policy_form("LOYALTY", "0", "700"))
    assert refused.status_code == 422 and 'id="LOYALTY-approval_threshold-error"' in refused.text
    assert "<html" not in refused.text


@pytest.mark.parametrize("threshold, limit, field", [
    ("0", "100", "approval_threshold"),
    ("abc", "100", "approval_threshold"),
    ("1.5", "100", "approval_threshold"),
    ("", "100", "approval_threshold"),
    ("100", "-1", "operator_daily_limit"),
    ("100", str(10**15 + 1), "operator_daily_limit"),
    ("100", "9" * 40, "operator_daily_limit"),
])
def test_a_bad_value_is_an_inline_422_and_changes_nothing(login, threshold, limit, field):
    admin = login("admin")
    admin.get(POLICIES)
    before = policy_of("GOLD")
    response = admin.post(POLICIES, policy_form("GOLD", threshold, limit))
    assert response.status_code == 422
    assert f'id="GOLD-{field}-error"' in response.text
    assert policy_of("GOLD") == before
    assert events("policy.changed") == []


def test_an_unknown_asset_is_404_and_changes_nothing(login):
    admin = login("admin")
    admin.get(POLICIES)
    response = admin.post(POLICIES, policy_form("NOPE", "10", "10"))
    assert response.status_code == 404
    assert events("policy.changed") == []


@pytest.mark.parametrize("role", ["viewer", "auditor", "operator"])
def test_below_admin_the_policy_is_403_and_the_attempt_is_audited(login, role):
    browser = login(role, f"{role}-x")
    before = policy_of("GOLD")
    assert browser.get(POLICIES).status_code == 403
    response = browser.post(POLICIES, policy_form("GOLD", "5", "5"))
    assert response.status_code == 403 and "Not allowed" in response.text
    assert policy_of("GOLD") == before
    denied = events("access.denied")
    assert [(e.actor, e.outcome, e.details["method"], e.details["path"]) for e in denied] == [
        (f"operator:{role}-x", "refused", "GET", POLICIES),
        (f"operator:{role}-x", "refused", "POST", POLICIES)]


# ---------------------------------------------------------------- reason codes


def test_an_admin_adds_a_reason_code_and_it_is_offered_and_audited(login):
    admin = login("admin")
    admin.get(POLICIES)
    response = admin.post("/admin/reason-codes", {"code": "Chargeback_fix",
                                                  "title": "Chargeback fixed"})
    assert response.status_code == 303
    added = reason_code("chargeback_fix")
    assert (added.title, added.active) == ("Chargeback fixed", True)
    assert "chargeback_fix" in [row.code for row in controls.list_reason_codes()]
    page = admin.get(POLICIES).text
    assert "Reason code chargeback_fix added." in page and 'data-code="chargeback_fix"' in page
    [event] = events("reason_code.added")
    assert (event.object_id, event.details) == ("chargeback_fix", {"title": "Chargeback fixed"})


@pytest.mark.parametrize("code, title, field", [
    ("", "A title", "code"),
    ("has space", "A title", "code"),
    ("9starts_with_a_digit", "A title", "code"),
    ("x" * 33, "A title", "code"),
    ("goodwill", "Taken", "code"),
    ("fine_code", "", "title"),
    ("fine_code", "t" * 129, "title"),
])
def test_a_bad_reason_code_is_an_inline_422_and_adds_nothing(login, code, title, field):
    admin = login("admin")
    admin.get(POLICIES)
    before = [row.code for row in controls.list_reason_codes(active_only=False)]
    response = admin.post("/admin/reason-codes", {"code": code, "title": title})
    assert response.status_code == 422 and f'id="{field}-error"' in response.text
    db.session.rollback()
    assert [row.code for row in controls.list_reason_codes(active_only=False)] == before
    assert events("reason_code.added") == []


def test_an_admin_retires_and_restores_a_reason_code(login):
    controls.add_reason_code("lottery", "Lottery prize")
    admin = login("admin")
    admin.get(POLICIES)
    assert admin.post("/admin/reason-codes/retire", {"code": "lottery"}).status_code == 303
    assert reason_code("lottery").active is False
    assert "lottery" not in [row.code for row in controls.list_reason_codes()]
    page = admin.get(POLICIES).text
    assert "Reason code lottery retired." in page and "Restore lottery" in page
    assert admin.post("/admin/reason-codes/restore", {"code": "lottery"}).status_code == 303
    assert reason_code("lottery").active is True
    assert [e.details for e in events("reason_code.changed")] == [{"active": False},
                                                                  {"active": True}]


def test_retiring_an_unknown_code_is_refused(login):
    admin = login("admin")
    admin.get(POLICIES)
    assert admin.post("/admin/reason-codes/retire", {"code": "nope"}).status_code == 400
    assert events("reason_code.changed") == []


def test_an_operator_may_not_add_or_retire_a_reason_code(login):
    operator = login("operator")
    added = operator.post("/admin/reason-codes", {"code": "mine", "title": "Mine"})
    retired = operator.post("/admin/reason-codes/retire", {"code": "goodwill"})
    assert (added.status_code, retired.status_code) == (403, 403)
    assert reason_code("mine") is None and reason_code("goodwill").active
