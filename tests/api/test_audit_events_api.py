"""GET /api/v1/audit-events: the audit trail of people for a read key, newest first, with the
audit page's filters, keyset pages, and 400/422 for a bad cursor or filter."""
from datetime import timedelta

import pytest

from wallet_web import audit_events, operators
from wallet_web.audit_events import Who
from wallet_web.extensions import db
from wallet_web.models import utcnow

URL = "/api/v1/audit-events"


def note(action: str, actor: str, operator_id: int | None = None, refused: bool = False,
         **fields) -> None:
    who = Who(actor, operator_id=operator_id)
    if refused:
        audit_events.record_refusal(action, who=who, **fields)
        return
    audit_events.record(action, who=who, **fields)
    db.session.commit()


@pytest.fixture
def trail(app):
    """An operator (created), their change and a refused attempt, and a key's freeze."""
    ann = operators.create_operator("ann", "correct horse battery", "operator")
    note("operator.role_changed", "operator:ann", ann.id, object_type="operator",
         object_id=42, role=["viewer", "operator"])
    note("approval.refused", "operator:ann", ann.id, refused=True, object_type="request",
         object_id=7, error="self_approval")
    note("user.frozen", "api:shop", object_type="user", object_id=9, reason="chargeback")
    return ann


def actions(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return [item["action"] for item in response.json["items"]]


def test_a_read_key_reads_the_trail_newest_first(client, auth, read_key, trail):
    response = client.get(URL, headers=auth(read_key))
    body = response.json
    # operator.created came first (create_operator); the newest is first
    assert actions(response)[:4] == ["user.frozen", "approval.refused", "operator.role_changed",
                                     "operator.created"]
    frozen = body["items"][0]
    assert {key: frozen[key] for key in ("outcome", "actor", "operator_id", "api_key_id",
                                         "object_type", "object_id", "details")} == {
        "outcome": "done", "actor": "api:shop", "operator_id": None, "api_key_id": None,
        "object_type": "user", "object_id": "9", "details": {"reason": "chargeback"}}
    assert body["next_cursor"] is None and frozen["created_at"].endswith(("Z", "+00:00"))


def test_no_key_is_401_and_a_bad_key_too(client, trail):
    assert client.get(URL).status_code == 401
    bad = client.get(URL, headers={"Authorization": "Bearer wk_nope"})
    assert (bad.status_code, bad.json["error"]["code"]) == (401, "unauthorized")


def test_the_filters_are_the_audit_pages(client, auth, read_key, trail):
    def get(**query):
        return actions(client.get(URL, query_string=query, headers=auth(read_key)))

    assert get(action="user.frozen") == ["user.frozen"]
    assert get(outcome="refused") == ["approval.refused"]
    assert get(actor="API:") == ["user.frozen"]
    assert get(actor="operator:ann") == ["approval.refused", "operator.role_changed"]
    assert get(operator_id=trail.id) == ["approval.refused", "operator.role_changed"]
    assert get(object_type="operator", object_id="42") == ["operator.role_changed"]
    later = (utcnow() + timedelta(minutes=5)).isoformat()
    assert get(since=later) == []
    assert len(get(until=later)) >= 4


def test_reading_the_trail_records_nothing(client, auth, read_key, trail):
    before = actions(client.get(URL, headers=auth(read_key)))
    assert actions(client.get(URL, headers=auth(read_key))) == before


def test_the_trail_pages_with_a_cursor(client, auth, read_key, app):
    for n in range(7):
        note("reason_code.changed", "operator:pager", object_type="reason_code",
             object_id=f"c{n}")
    seen, cursor = [], None
    for _ in range(4):  # 7 events, 3 a page: a walk that does not end in 3 pages is wrong
        query = {"actor": "operator:pager", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(URL, query_string=query, headers=auth(read_key)).json
        seen += [item["object_id"] for item in page["items"]]
        note("reason_code.changed", "operator:pager", object_type="reason_code",
             object_id=f"late{len(seen)}")  # arrives mid-walk: not on the following pages
        if not (cursor := page["next_cursor"]):
            break
    assert seen == [f"c{n}" for n in reversed(range(7))]


@pytest.mark.parametrize("query, field", [
    ({"action": "teleport"}, "action"),
    ({"outcome": "maybe"}, "outcome"),
    ({"operator_id": "abc"}, "operator_id"),
    ({"operator_id": "0"}, "operator_id"),
    ({"since": "yesterday"}, "since"),
    ({"until": "1700000000"}, "until"),
    ({"since": "2025-01-01T00:00:00"}, "since"),  # no offset
    ({"actor": "a\x00b"}, "actor"),
    ({"object_id": "x" * 129}, "object_id"),
    ({"limit": "0"}, "limit"),
])
def test_a_bad_filter_is_422_with_its_field(client, auth, read_key, query, field):
    response = client.get(URL, query_string=query, headers=auth(read_key))
    assert response.status_code == 422
    assert (response.json["error"]["code"], response.json["error"]["field"]) == (
        "validation_error", field)


def test_a_forged_cursor_is_400(client, auth, read_key):
    response = client.get(URL, query_string={"cursor": "garbage"}, headers=auth(read_key))
    assert (response.status_code, response.json["error"]["code"]) == (400, "invalid_cursor")


def test_the_route_is_in_the_openapi_document_with_its_filters(client):
    document = client.get("/api/v1/openapi.json").json
    operation = document["paths"][URL]["get"]
    assert operation["security"] == [{"bearerAuth": []}]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert set(parameters) == {"action", "outcome", "actor", "operator_id", "object_type",
                               "object_id", "since", "until", "cursor", "limit"}
    assert "login.succeeded" in parameters["action"]["schema"]["enum"]
    assert parameters["outcome"]["schema"]["enum"] == ["done", "refused"]
    assert {"200", "400", "401", "403", "422"} <= set(operation["responses"])
