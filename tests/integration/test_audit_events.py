"""The audit trail of people: append-only in the database, and written by every action it
lists, in the same transaction as the change (a refused change leaves only a refusal)."""
import pytest
from sqlalchemy import select, text

from wallet_web import accounts, api_keys, audit_events, controls, errors, operators
from wallet_web.extensions import db
from wallet_web.models import AuditEvent

PASSWORD = "a-long-password"


def trail(*actions: str) -> list[tuple]:
    """(action, outcome, actor, object_type, object_id) of the events, oldest first."""
    db.session.rollback()
    query = select(AuditEvent).order_by(AuditEvent.id)
    if actions:
        query = query.where(AuditEvent.action.in_(actions))
    return [(e.action, e.outcome, e.actor, e.object_type, e.object_id)
            for e in db.session.scalars(query)]


def last(action: str) -> AuditEvent:
    db.session.rollback()
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id.desc())).first()


@pytest.mark.both_backends
def test_audit_events_can_be_neither_changed_nor_deleted(app):
    operators.create_operator("ann", PASSWORD, "viewer")

    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="(?i)not allowed"):
            db.session.execute(text(statement))
            db.session.commit()
        db.session.rollback()

    assert len(trail("operator.created")) == 1


def test_operator_changes_from_the_command_line_are_recorded_with_the_cli_as_actor(app):
    created = operators.create_operator("ann", PASSWORD, "operator")
    operators.set_role(created.id, "admin")
    operators.set_approver(created.id, True)
    operators.set_password(created.id, "another-long-password")
    operators.set_active(created.id, False)
    operators.set_active(created.id, True)

    events = trail()

    assert [e[0] for e in events] == [
        "operator.created", "operator.role_changed", "operator.approver_changed",
        "operator.password_set", "operator.disabled", "operator.enabled"]
    assert {e[2].split(":")[0] for e in events} == {"cli"}
    assert {e[3:] for e in events} == {("operator", str(created.id))}
    assert last("operator.role_changed").details == {"role": ["operator", "admin"]}


def test_a_password_is_never_in_the_trail(app):
    created = operators.create_operator("ann", PASSWORD, "operator")
    operators.set_password(created.id, "another-long-password")

    db.session.rollback()
    dumped = str([(e.details, e.actor) for e in db.session.scalars(select(AuditEvent))])
    assert PASSWORD not in dumped and "another-long-password" not in dumped


def test_nothing_is_recorded_for_a_change_that_changes_nothing(app):
    created = operators.create_operator("ann", PASSWORD, "operator")

    operators.set_role(created.id, "operator")
    operators.set_active(created.id, True)

    assert [e[0] for e in trail()] == ["operator.created"]


def test_the_approver_right_is_only_for_roles_that_move_value(app):
    viewer = operators.create_operator("vic", PASSWORD, "viewer")

    with pytest.raises(errors.InvalidOperator):
        operators.set_approver(viewer.id, True)
    with pytest.raises(errors.InvalidOperator):
        operators.create_operator("aud", PASSWORD, "auditor", can_approve=True)
    approver = operators.create_operator("olga", PASSWORD, "operator", can_approve=True)
    operators.set_role(approver.id, "viewer")

    assert operators.get_operator(approver.id).can_approve is False


def test_admins_hold_the_approver_right_unless_told_otherwise(app):
    assert operators.create_operator("boss", PASSWORD, "admin").can_approve is True
    assert operators.create_operator("boss2", PASSWORD, "admin", False).can_approve is False
    assert operators.create_operator("op", PASSWORD, "operator").can_approve is False


def test_api_keys_created_and_revoked_are_recorded_without_the_token(app):
    key, token = api_keys.create_key("shop", "write")
    api_keys.revoke_key(key.id)

    assert trail() == [("api_key.created", "done", trail()[0][2], "api_key", str(key.id)),
                       ("api_key.revoked", "done", trail()[0][2], "api_key", str(key.id))]
    assert token not in str(last("api_key.created").details)


@pytest.mark.both_backends
def test_user_status_changes_are_recorded_with_who_did_them_and_why(app, make_user):
    user = make_user()
    actor = accounts.Actor("operator:olga", operator_id=None)

    accounts.change_status(user, "freeze", "Fraud check", actor=actor)
    accounts.change_status(user, "unfreeze", "Cleared", actor=actor)

    assert trail("user.frozen", "user.unfrozen") == [
        ("user.frozen", "done", "operator:olga", "user", str(user)),
        ("user.unfrozen", "done", "operator:olga", "user", str(user))]
    assert last("user.frozen").details == {"previous_status": "active", "reason": "Fraud check"}


def test_a_refused_close_records_no_closing(app, make_user):
    user = make_user(balance=5)

    with pytest.raises(errors.BalanceNotZero):
        accounts.change_status(user, "close", "Player asked")

    assert trail("user.closed") == []


def test_a_user_registered_once_is_recorded_once(app):
    first = accounts.register_user("carol", "carol@example.com")
    accounts.register_user("carol", "carol@example.com")  # the same request again

    assert trail("user.created") == [("user.created", "done", trail("user.created")[0][2],
                                      "user", str(first.user_id))]


def test_policy_reason_code_and_limit_changes_are_recorded_with_before_and_after(app):
    ann = operators.create_operator("ann", PASSWORD, "operator")

    controls.set_policy("GOLD", 5_000, 20_000)
    controls.add_reason_code("chargeback", "Chargeback by the store")
    controls.set_reason_code_active("chargeback", False)
    controls.set_operator_limit(ann.id, "GOLD", 1_000)

    assert last("policy.changed").details == {"approval_threshold": [10_000, 5_000],
                                              "operator_daily_limit": [50_000, 20_000]}
    assert last("reason_code.changed").details == {"active": False}
    assert last("operator.limit_changed").details == {"asset": "GOLD", "daily_limit": [None, 1_000]}


@pytest.mark.parametrize("threshold, daily", [(0, 10), (10, -1), (10**16, 10), (10, 1.5)])
def test_a_bad_policy_is_refused_and_changes_nothing(app, threshold, daily):
    with pytest.raises(errors.InvalidPolicy):
        controls.set_policy("GOLD", threshold, daily)

    assert controls.policy_for("GOLD").approval_threshold == 10_000
    assert trail("policy.changed") == []


def test_an_api_call_is_recorded_with_its_key_address_and_request_id(app, make_user):
    _, token = api_keys.create_key("support-bot", "write")
    user = make_user()

    response = app.test_client().post(
        f"/api/v1/users/{user}/freeze", json={"reason": "Chargeback"},
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": "req-audit-1"})

    assert response.status_code == 200, response.text
    event = last("user.frozen")
    assert (event.actor, event.address, event.request_id) == (
        "api:support-bot", "127.0.0.1", "req-audit-1")
    assert event.api_key_id is not None and event.operator_id is None


def test_every_recorded_action_is_on_the_list():
    assert len(set(audit_events.ACTIONS)) == len(audit_events.ACTIONS)
    with pytest.raises(AssertionError):
        audit_events.record("made.up")
