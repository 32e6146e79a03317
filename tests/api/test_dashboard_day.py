"""Issue 15, the dashboard day: GET /api/v1/transactions.csv is named after its filters and time
range, in UTC, and no filter value breaks its Content-Disposition header."""
import re

import pytest

from wallet_web import exports

from ..web.test_dashboard_day import HOSTILE_REFERENCES, SAFE_ATTACHMENT


def attachment_name(response) -> str:
    match = SAFE_ATTACHMENT.fullmatch(response.headers["Content-Disposition"])
    assert match, response.headers["Content-Disposition"]
    return match.group(1)


def test_the_api_csv_is_named_after_its_filters_and_its_time_range_in_utc(client, auth,
                                                                          make_user):
    user = make_user(balance=5)
    response = client.get("/api/v1/transactions.csv", buffered=True, headers=auth(), query_string={
        "user_id": user, "asset": "GOLD", "kind": "topup",
        "since": "2026-11-01T02:00:00+02:00", "until": "2026-11-30T12:15:00Z"})
    assert response.status_code == 200
    assert attachment_name(response) == (
        f"transactions_user-{user}_GOLD_topup_2026-11-01_to_2026-11-30T121500Z.csv")


def test_without_filters_the_api_csv_is_transactions_csv(client, auth):
    response = client.get("/api/v1/transactions.csv", buffered=True, headers=auth())
    assert attachment_name(response) == "transactions.csv"


def test_a_metadata_filter_is_in_the_name_made_safe(client, auth):
    response = client.get("/api/v1/transactions.csv", buffered=True, headers=auth(),
                          query_string={"metadata": 'order:"7"/8'})
    assert attachment_name(response) == "transactions_meta-order-7-8.csv"


@pytest.mark.parametrize("reference", HOSTILE_REFERENCES)
def test_a_hostile_reference_never_breaks_the_api_download_header(client, auth, reference):
    response = client.get("/api/v1/transactions.csv", buffered=True, headers=auth(),
                          query_string={"reference_id": reference})
    if len(reference) > 128:  # refused by the schema with the error shape, and no file
        assert response.status_code == 422 and "Content-Disposition" not in response.headers
        return
    assert response.status_code == 200
    name = attachment_name(response)
    assert len(name) <= exports.NAME_STEM_MAX + len(".csv")
    assert re.fullmatch(r"transactions_ref-[A-Za-z0-9._-]+\.csv", name)
