"""The dashboard's movement forms meet the asset's money limits with inline messages."""
import pytest

from wallet_web import assets, queries

from .test_users import ALICE, count_transactions, gold, movement

pytestmark = pytest.mark.both_backends


def test_an_amount_above_the_assets_maximum_is_an_inline_error(login):
    admin = login("admin")  # no per-operator cap: only the asset's limit applies
    before = count_transactions()
    response = admin.htmx("POST", "/users/2/topup", movement(amount="1,000,000,001"))
    assert response.status_code == 422
    assert "Above the GOLD maximum of 1,000,000,000 per movement." in response.text
    assert count_transactions() == before and gold() == 100


def test_an_amount_beyond_any_integer_column_is_the_same_inline_error(login):
    response = login("admin").htmx("POST", "/users/2/topup", movement(amount="9" * 30))
    assert response.status_code == 422
    assert "Above the GOLD maximum of 1,000,000,000 per movement." in response.text


def test_a_credit_beyond_the_maximum_balance_is_an_inline_error(login):
    assets.set_limits("GOLD", max_amount=1000, max_balance=1000)
    response = login("operator").htmx("POST", "/users/2/bonus", movement("bonus", amount="901"))
    assert response.status_code == 422
    assert "The wallet would hold more than the GOLD maximum of 1,000." in response.text
    assert gold(ALICE) == 100 and queries.user_balances(ALICE)
