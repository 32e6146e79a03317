"""Promises of the API that had no test of their own (docs/promises.md): the code of a bad new
user, the account filter of the transaction list, the streamed CSV, and the `multi` asset label
of the metrics for movements of no single asset."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wallet_web import accounts, ledger


def scrape(client) -> dict:
    """{(sample name, sorted labels): value} of one /metrics answer."""
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def grew(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("body, code, field", [
    ({"username": "nora", "email": "not-an-address"}, "invalid_user", "email"),
    ({"username": "nora", "email": "nora@"}, "invalid_user", "email"),
    # the schema's own patterns answer first, as README's errors table says
    ({"username": "no ra", "email": "nora@example.com"}, "validation_error", "username"),
    ({"username": "nora", "email": "nora@example.com", "external_id": "a b"},
     "validation_error", "external_id"),
])
def test_a_bad_field_of_a_new_user_is_422_with_its_code_and_field(client, auth, body, code,
                                                                  field):
    response = client.post("/api/v1/users", json=body, headers=auth())
    assert response.status_code == 422
    error = response.json["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert client.get("/api/v1/users?q=nora", headers=auth()).json["items"] == []


# ---------------------------------------------------------------- transactions


def test_transactions_filtered_by_account_are_exactly_that_accounts(client, auth, make_user,
                                                                    wallet_of):
    ann, bob = make_user(name="gap-ann"), make_user(name="gap-bob")
    ann_in = ledger.topup(ann, "GOLD", 50, "ann-in").id
    bob_in = ledger.topup(bob, "GOLD", 50, "bob-in").id
    ann_to_bob = ledger.transfer(ann, bob, "GOLD", 5, "ann-to-bob").id
    ann_diamond = ledger.topup(ann, "DIAMOND", 1, "ann-diamond").id

    def listed(account_id: int) -> set[int]:
        response = client.get(f"/api/v1/transactions?account_id={account_id}&limit=200",
                              headers=auth())
        assert response.status_code == 200
        return {item["id"] for item in response.json["items"]}

    assert listed(wallet_of(ann)) == {ann_in, ann_to_bob}
    assert listed(wallet_of(bob)) == {bob_in, ann_to_bob}
    assert listed(wallet_of(ann, "DIAMOND")) == {ann_diamond}
    treasury = accounts.ensure_house_accounts("DIAMOND")["treasury"]
    assert ann_diamond in listed(treasury) and not {ann_in, bob_in, ann_to_bob} & listed(treasury)


def test_the_api_csv_is_streamed(app, auth, make_user):
    ledger.topup(make_user(), "GOLD", 5, "t-csv")
    with app.test_request_context("/api/v1/transactions.csv", headers=auth()):
        response = app.full_dispatch_request()
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert response.is_streamed
        assert "t-csv" in "".join(response.response)


# ---------------------------------------------------------------- metrics


def test_a_reversal_and_a_genesis_are_counted_under_asset_multi(client, make_user):
    user = make_user()
    topup = ledger.topup(user, "GOLD", 5, "t-metrics")
    equity, treasury = (accounts.ensure_house_accounts("GOLD")[kind]
                        for kind in ("equity", "treasury"))
    before = scrape(client)

    ledger.reverse(topup.id, "r-metrics")
    ledger.post("genesis", [ledger.Leg(equity, -5), ledger.Leg(treasury, 5)], "genesis-metrics")

    after = scrape(client)
    for kind in ("reversal", "genesis"):
        assert grew(before, after, "wallet_ledger_transactions_total", kind=kind,
                    asset="multi") == 1
        assert grew(before, after, "wallet_ledger_transactions_total", kind=kind,
                    asset="GOLD") == 0
