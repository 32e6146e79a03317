"""`flask policy set` and `flask policy show`: an asset's approval threshold and operator daily
limit from the command line, audited as the command line's, and a bad value refused with a
non-zero exit that changes nothing."""
import pytest
from sqlalchemy import select

from wallet_web import controls
from wallet_web.extensions import db
from wallet_web.limits import (
    BALANCE_CEILING, DEFAULT_APPROVAL_THRESHOLD, DEFAULT_OPERATOR_DAILY_LIMIT,
)
from wallet_web.models import AuditEvent

pytestmark = pytest.mark.both_backends


@pytest.fixture
def policy(app):
    """policy(*args) -> the result of `flask policy *args`."""
    runner = app.test_cli_runner()

    def run(*args: str):
        result = runner.invoke(args=["policy", *args])
        db.session.rollback()  # read what the command committed
        return result
    return run


def changes() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "policy.changed")
                                   .order_by(AuditEvent.id)))


def test_show_lists_every_asset_with_the_defaults(policy):
    result = policy("show")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{asset}: approval from {DEFAULT_APPROVAL_THRESHOLD:,}, "
        f"operator daily limit {DEFAULT_OPERATOR_DAILY_LIMIT:,}"
        for asset in ("DIAMOND", "GOLD", "LOYALTY")]


def test_set_changes_both_values_and_is_audited_as_the_command_lines(policy):
    result = policy("set", "GOLD", "--approval-threshold", "2500", "--operator-daily-limit", "9000")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "GOLD: approval from 2,500, operator daily limit 9,000"
    stored = controls.policy_for("GOLD")
    assert (stored.approval_threshold, stored.operator_daily_limit) == (2500, 9000)
    assert stored.updated_by.startswith("cli:")
    [event] = changes()
    assert event.actor.startswith("cli:") and event.object_id == "GOLD"
    assert event.details["approval_threshold"] == [DEFAULT_APPROVAL_THRESHOLD, 2500]
    assert "GOLD: approval from 2,500, operator daily limit 9,000" in policy("show").output


def test_an_option_left_out_keeps_its_value(policy):
    policy("set", "DIAMOND", "--approval-threshold", "300", "--operator-daily-limit", "900")
    assert policy("set", "DIAMOND", "--operator-daily-limit", "1000").exit_code == 0
    stored = controls.policy_for("DIAMOND")
    assert (stored.approval_threshold, stored.operator_daily_limit) == (300, 1000)


@pytest.mark.parametrize("args, message", [
    (["GOLD", "--approval-threshold", "0"], "approval_threshold must be a whole number"),
    (["GOLD", "--operator-daily-limit", "-1"], "operator_daily_limit must be a whole number"),
    (["GOLD", "--operator-daily-limit", str(BALANCE_CEILING + 1)], "operator_daily_limit"),
    (["GOLD", "--approval-threshold", "1.5"], "is not a valid integer"),
    (["NOPE", "--approval-threshold", "10"], "asset 'NOPE' does not exist"),
])
def test_a_bad_value_is_refused_with_a_non_zero_exit_and_changes_nothing(policy, args,
                                                                         message):
    result = policy("set", *args)
    assert result.exit_code != 0
    assert message in result.output
    stored = controls.policy_for("GOLD")
    assert (stored.approval_threshold, stored.operator_daily_limit, stored.updated_at) == (
        DEFAULT_APPROVAL_THRESHOLD, DEFAULT_OPERATOR_DAILY_LIMIT, None)
    assert changes() == []
