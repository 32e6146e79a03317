"""The dashboard's movement forms meet the asset's money limits with inline messages."""
import pytest

from wallet_web import assets

from .conftest import OPENING, count_transactions, gold_of
from .test_users import movement

pytestmark = pytest.mark.both_backends


def test_an_amount_above_the_assets_maximum_is_an_inline_error(login, customer):
    admin = login("admin")  # no per-operator cap: only the asset's limit applies
    before = count_transactions()
    response = admin.htmx("POST", f"{customer.page}/topup", movement(amount="1,000,000,001"))
    assert response.status_code == 422
    assert "Above the GOLD maximum of 1,000,000,000 per movement." in response.text
    assert count_transactions() == before and gold_of(customer.id) == OPENING


def test_an_amount_beyond_any_integer_column_is_the_same_inline_error(login, customer):
    response = login("admin").htmx("POST", f"{customer.page}/topup", movement(amount="9" * 30))
    assert response.status_code == 422
    assert "Above the GOLD maximum of 1,000,000,000 per movement." in response.text


def test_a_credit_beyond_the_maximum_balance_is_an_inline_error(login, customer):
    assets.set_limits("GOLD", max_amount=1000, max_balance=1000)
    one_too_many = str(1000 - OPENING + 1)
    response = login("operator").htmx("POST", f"{customer.page}/bonus",
                                      movement("bonus", amount=one_too_many))
    assert response.status_code == 422
    assert "The wallet would hold more than the GOLD maximum of 1,000." in response.text
    assert gold_of(customer.id) == OPENING
