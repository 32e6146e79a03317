"""Admin pages: operators (the list, each operator's page: role, approver right, daily limits
and today's use) and API keys."""
import re

import pytest
from sqlalchemy import select

from wallet_web import api_keys, approvals, controls, operators
from wallet_web.approvals import Intent
from wallet_web.extensions import db
from wallet_web.models import AuditEvent


def fresh(operator_id: int):
    db.session.rollback()  # what the requests committed
    return operators.get_operator(operator_id)


def events(action: str) -> list[AuditEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


def limits(**values: str) -> dict:
    """The limits form: every asset, empty unless given."""
    return {f"limit-{asset}": values.get(asset, "") for asset in ("DIAMOND", "GOLD", "LOYALTY")}


def test_an_admin_creates_an_operator(login):
    admin = login("admin")
    admin.get("/admin/operators")
    response = admin.post("/admin/operators", {"username": "Sam", "password": "long enough pass",
                                               "role": "operator"})
    assert response.status_code == 303
    page = admin.get("/admin/operators").text
    assert "Operator sam (operator) created." in page
    sam = operators.authenticate("sam", "long enough pass", "127.0.0.1")
    assert (sam.role, sam.can_approve) == ("operator", False)


def test_the_create_form_grants_the_approver_right_when_ticked(login):
    admin = login("admin")
    admin.get("/admin/operators")
    response = admin.post("/admin/operators", {"username": "pat", "password": "long enough pass",
                                               "role": "operator", "can_approve": "y"})
    assert response.status_code == 303
    assert operators.find_operator("pat").can_approve is True
    refused = admin.post("/admin/operators", {"username": "vic", "password": "long enough pass",
                                              "role": "viewer", "can_approve": "y"})
    assert refused.status_code == 422 and 'id="can_approve-error"' in refused.text
    assert operators.find_operator("vic") is None


def test_operator_form_errors_are_inline_and_create_nothing(login):
    admin = login("admin")
    admin.get("/admin/operators")
    short = admin.post("/admin/operators", {"username": "tom", "password": "short",
                                            "role": "viewer"})
    assert short.status_code == 422 and 'id="password-error"' in short.text
    taken = admin.post("/admin/operators", {"username": "admin", "password": "long enough pass",
                                            "role": "viewer"})
    assert taken.status_code == 422 and "already exists" in taken.text
    bad = admin.post("/admin/operators", {"username": "a b", "password": "long enough pass",
                                          "role": "viewer"})
    assert bad.status_code == 422 and 'id="username-error"' in bad.text
    assert [op.username for op in operators.list_operators()] == ["admin"]


def test_an_admin_disables_and_enables_an_operator_but_not_themselves(login, make_operator):
    admin = login("admin")
    other = make_operator("viewer", "uma")
    admin.get("/admin/operators")
    assert admin.post(f"/admin/operators/{other.id}/disable").status_code == 303
    db.session.rollback()  # the test's own session still holds the row as it read it
    assert operators.authenticate("uma", "correct horse battery", "127.0.0.1") is None
    assert admin.post(f"/admin/operators/{other.id}/enable").status_code == 303
    db.session.rollback()
    assert operators.authenticate("uma", "correct horse battery", "127.0.0.1") is not None
    me = operators.find_operator("admin")
    assert admin.post(f"/admin/operators/{me.id}/disable").status_code == 403
    assert admin.post("/admin/operators/999/disable").status_code == 404


def test_an_api_key_is_shown_once_and_never_cached(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": "shop", "scope": "write"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    token = response.text.split('id="new-key">', 1)[1].split("<", 1)[0]
    assert api_keys.authenticate(token).name == "shop"
    again = admin.get("/admin/api-keys").text
    assert token not in again and token[:10] in again


def test_an_api_key_needs_a_name(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": "", "scope": "read"})
    assert response.status_code == 422 and 'id="name-error"' in response.text
    assert api_keys.list_keys() == []


def test_an_admin_revokes_an_api_key(login):
    admin = login("admin")
    key, token = api_keys.create_key("game", "read")
    admin.get("/admin/api-keys")
    assert admin.post(f"/admin/api-keys/{key.id}/revoke").status_code == 303
    assert api_keys.authenticate(token) is None
    assert "revoked" in admin.get("/admin/api-keys").text


# ---------------------------------------------------------------- one operator's page


def test_the_operators_list_links_each_operator_to_their_page(login, make_operator):
    other = make_operator("operator", "otto")
    page = login("admin").get("/admin/operators").text
    assert f'<a href="/admin/operators/{other.id}">otto</a>' in page
    own = login("admin", "root").get(f"/admin/operators/{other.id}")
    assert own.status_code == 200 and "otto" in own.text and "Daily limits" in own.text


def test_an_unknown_operator_is_404(login):
    assert login("admin").get("/admin/operators/999999").status_code == 404


def test_an_admin_changes_an_operators_role_and_it_is_audited(login, make_operator):
    other = make_operator("operator", "rita", can_approve=True)
    admin = login("admin")
    admin.get(f"/admin/operators/{other.id}")
    response = admin.post(f"/admin/operators/{other.id}/role", {"role": "auditor"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/operators/{other.id}"
    changed = fresh(other.id)
    assert (changed.role, changed.can_approve) == ("auditor", False)  # auditors cannot approve
    [event] = events("operator.role_changed")
    assert (event.object_id, event.details) == (str(other.id), {"role": ["operator", "auditor"]})
    assert "rita has the auditor role." in admin.get(f"/admin/operators/{other.id}").text
    bad = admin.post(f"/admin/operators/{other.id}/role", {"role": "root"})
    assert bad.status_code == 422 and 'id="role-error"' in bad.text
    assert fresh(other.id).role == "auditor"


def test_an_admin_cannot_remove_their_own_admin_role_nor_disable_themselves(login):
    admin = login("admin", "self")
    me = operators.find_operator("self")
    page = admin.get(f"/admin/operators/{me.id}").text
    assert "This is you" in page and "Disable self" not in page
    assert admin.post(f"/admin/operators/{me.id}/role", {"role": "viewer"}).status_code == 403
    assert admin.post(f"/admin/operators/{me.id}/disable").status_code == 403
    assert (fresh(me.id).role, fresh(me.id).is_active) == ("admin", True)
    assert events("operator.role_changed") == []
    assert admin.post(f"/admin/operators/{me.id}/role", {"role": "admin"}).status_code == 303


def test_an_admin_grants_and_removes_the_approver_right(login, make_operator):
    other = make_operator("operator", "abe")
    admin = login("admin")
    admin.get(f"/admin/operators/{other.id}")
    assert admin.post(f"/admin/operators/{other.id}/approver/grant").status_code == 303
    assert fresh(other.id).can_approve is True
    assert "Remove the approver right" in admin.get(f"/admin/operators/{other.id}").text
    assert admin.post(f"/admin/operators/{other.id}/approver/revoke").status_code == 303
    assert fresh(other.id).can_approve is False
    assert [e.details for e in events("operator.approver_changed")] == [
        {"can_approve": True}, {"can_approve": False}]


def test_a_viewer_cannot_be_given_the_approver_right(login, make_operator):
    viewer = make_operator("viewer", "vera")
    admin = login("admin")
    admin.get(f"/admin/operators/{viewer.id}")
    response = admin.post(f"/admin/operators/{viewer.id}/approver/grant")
    assert response.status_code == 422 and "may hold the approver right" in response.text
    assert fresh(viewer.id).can_approve is False


def test_an_own_daily_limit_is_the_one_the_controls_apply_until_emptied(login, make_operator):
    other = make_operator("operator", "lena")
    policy = controls.policy_for("GOLD").operator_daily_limit
    admin = login("admin")
    admin.get(f"/admin/operators/{other.id}")
    response = admin.post(f"/admin/operators/{other.id}/limits", limits(GOLD="1,234"))
    assert response.status_code == 303
    db.session.rollback()
    assert controls.daily_limit_of(other.id, "GOLD") == 1234
    assert controls.daily_limit_of(other.id, "DIAMOND") == controls.policy_for("DIAMOND") \
        .operator_daily_limit
    page = admin.get(f"/admin/operators/{other.id}").text
    assert "1 change." in page and re.search(r'name="limit-GOLD"[^>]* value="1234"', page)
    assert admin.post(f"/admin/operators/{other.id}/limits", limits()).status_code == 303
    db.session.rollback()
    assert controls.daily_limit_of(other.id, "GOLD") == policy
    assert [e.details for e in events("operator.limit_changed")] == [
        {"asset": "GOLD", "daily_limit": [None, 1234]},
        {"asset": "GOLD", "daily_limit": [1234, None]}]


@pytest.mark.parametrize("value", ["-1", "abc", str(10**15 + 1)])
def test_one_bad_limit_is_an_inline_422_and_changes_no_limit(login, make_operator, value):
    other = make_operator("operator", "noor")
    admin = login("admin")
    admin.get(f"/admin/operators/{other.id}")
    response = admin.post(f"/admin/operators/{other.id}/limits",
                          limits(DIAMOND="5", GOLD=value))
    assert response.status_code == 422 and 'id="limit-GOLD-error"' in response.text
    db.session.rollback()
    assert controls.operator_limits(other.id) == {}
    assert events("operator.limit_changed") == []


def test_the_page_shows_todays_use_against_the_limit(login, make_operator, make_user):
    maker = make_operator("operator", "mo")
    controls.set_operator_limit(maker.id, "GOLD", 5_000)
    signed_in = operators.SignedIn(maker.id, maker.username, maker.role)
    approvals.submit(Intent("topup", "web-usage-1", "goodwill", "For the usage", "GOLD", 1_200,
                            user_id=make_user()), signed_in)
    page = login("admin").get(f"/admin/operators/{maker.id}").text
    gold = re.search(r'<tr data-asset="GOLD">.*?</tr>', page, re.S).group(0)
    assert "1,200 of 5,000" in gold and "3,800" in gold and "(own)" in gold
    diamond = re.search(r'<tr data-asset="DIAMOND">.*?</tr>', page, re.S).group(0)
    policy = controls.policy_for("DIAMOND").operator_daily_limit
    assert f"0 of {policy:,}" in diamond and "(own)" not in diamond


@pytest.mark.parametrize("role", ["viewer", "auditor", "operator"])
def test_an_operators_page_and_its_changes_are_for_admins_only(login, make_operator, role):
    other = make_operator("operator", "target")
    browser = login(role)
    assert browser.get(f"/admin/operators/{other.id}").status_code == 403
    for path, data in ((f"/admin/operators/{other.id}/role", {"role": "admin"}),
                       (f"/admin/operators/{other.id}/approver/grant", {}),
                       (f"/admin/operators/{other.id}/limits", limits(GOLD="1"))):
        assert browser.post(path, data).status_code == 403, path
    changed = fresh(other.id)
    assert (changed.role, changed.can_approve) == ("operator", False)
    assert controls.operator_limits(other.id) == {}
