"""Account set-up keeps a user's status on every wallet, also on one opened later."""
import pytest

from wallet_web import accounts, errors, ledger
from wallet_web.extensions import db
from wallet_web.models import Account


@pytest.mark.both_backends
def test_a_wallet_opened_later_for_a_new_asset_has_its_user_s_status(make_user):
    user = make_user(balance=5, name="late-wallets")
    accounts.change_status(user, "freeze", "chargeback review")
    accounts.ensure_asset("GEMS", "Gems")
    accounts.ensure_house_accounts("GEMS")
    accounts.ensure_user("late-wallets", "late-wallets@example.test")  # opens the GEMS wallet

    statuses = {a.asset_code: a.status for a in db.session.query(Account).filter_by(user_id=user)}
    assert statuses["GEMS"] == "frozen" and set(statuses.values()) == {"frozen"}
    with pytest.raises(errors.AccountFrozen):
        ledger.spend(user, "GOLD", 1, "after-freeze")
