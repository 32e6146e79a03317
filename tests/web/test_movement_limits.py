"""The dashboard's movement forms meet the asset's money limits and the operator controls'
daily limit with inline messages."""
import pytest

from wallet_web import assets, controls
from wallet_web.limits import BALANCE_CEILING

from .conftest import OPENING, count_transactions, gold_of
from .test_users import movement

pytestmark = pytest.mark.both_backends


@pytest.fixture
def no_controls(app):
    """An asset policy that neither asks for approval nor limits a day below the ceiling."""
    controls.set_policy("GOLD", approval_threshold=BALANCE_CEILING,
                        operator_daily_limit=BALANCE_CEILING)


def test_an_amount_above_the_assets_maximum_is_an_inline_error(login, customer, no_controls):
    admin = login("admin")
    before = count_transactions()
    response = admin.htmx("POST", f"{customer.page}/topup", movement(amount="1,000,000,001"))
    assert response.status_code == 422
    assert "Above the GOLD maximum of 1,000,000,000 per movement." in response.text
    assert count_transactions() == before and gold_of(customer.id) == OPENING


def test_an_amount_beyond_any_integer_column_is_the_daily_limit_message(login, customer,
                                                                       no_controls):
    before = count_transactions()
    response = login("admin").htmx("POST", f"{customer.page}/topup", movement(amount="9" * 30))
    assert response.status_code == 422
    assert (f"Above your daily GOLD limit: {BALANCE_CEILING:,} of {BALANCE_CEILING:,} left "
            "today (UTC).") in response.text
    assert count_transactions() == before


def test_the_daily_limit_is_met_before_the_assets_maximum(login, customer):
    limit = controls.policy_for("GOLD").operator_daily_limit
    response = login("admin").htmx("POST", f"{customer.page}/topup",
                                   movement(amount="1,000,000,001"))
    assert response.status_code == 422
    assert f"Above your daily GOLD limit: {limit:,} of {limit:,} left today (UTC)." in (
        response.text)
    assert gold_of(customer.id) == OPENING


def test_a_credit_beyond_the_maximum_balance_is_an_inline_error(login, customer):
    assets.set_limits("GOLD", max_amount=1000, max_balance=1000)
    one_too_many = str(1000 - OPENING + 1)
    response = login("operator").htmx("POST", f"{customer.page}/bonus",
                                      movement("bonus", amount=one_too_many))
    assert response.status_code == 422
    assert "The wallet would hold more than the GOLD maximum of 1,000." in response.text
    assert gold_of(customer.id) == OPENING
