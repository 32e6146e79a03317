"""Property: no JSON field, query argument or path segment of any API operation gets a 5xx,
and a refused request moves no money. Operations and their fields come from the route
registry that builds the OpenAPI document, so a new operation is covered without editing
this file. Each field is attacked alone, the others valid, so the hostile one goes deep."""
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings

import wallet_web.api  # noqa: F401  (importing the API registers its operations)
from wallet_web import accounts, audit, holds, ledger
from wallet_web.api.openapi import OPERATIONS

from ..hostile import json_values, money, text_values

pytestmark = pytest.mark.both_backends
EXAMPLES_PER_FIELD = 8
PATH_ARGUMENT = re.compile(r"<(?:\w+:)?(\w+)>")
VALID = {"amount": 1, "reference_id": "hostile-api", "description": "", "currency": "GOLD",
         "asset": "GOLD"}


def _path(operation, ids: dict, attacked: str | None = None, value: str = "") -> str:
    def fill(match):
        name = match.group(1)
        return quote(value, safe="") if name == attacked else str(ids[name])
    return PATH_ARGUMENT.sub(fill, operation.path)


def _valid_body(model, ids: dict) -> dict:
    values = {**VALID, "user_id": ids["user_id"]}
    return {name: values[name] for name in model.model_fields if name in values}


@pytest.fixture
def ids(make_user):
    user = make_user(balance=100)
    spent = ledger.spend(user, "GOLD", 1, "hostile-api-seed")
    wallet = next(leg.account_id for leg in spent.postings if leg.balance_after is not None)
    accounts.register_user("hostile_owner", "hostile-owner@example.com", "game:hostile")
    hold = holds.place(user, "GOLD", 1, "hostile-api-hold").hold.id
    return {"user_id": user, "tx_id": spent.id, "account_id": wallet, "external_id": "game:hostile",
            "hold_id": hold}


def test_every_operation_is_attacked():
    assert len(OPERATIONS) >= 13


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method} {op.path}")
def test_no_field_gets_a_5xx_or_moves_money_when_refused(client, auth, read_key, ids, operation):
    for key in (None, read_key):  # the write key, then a read key
        _attack_operation(client, auth(key), operation, ids)
    assert audit.verify().ok


def _attack_operation(client, headers, operation, ids):
    send = _sender(client, headers, operation, ids)
    for name in PATH_ARGUMENT.findall(operation.path):
        _attack(lambda value, name=name: send(_path(operation, ids, name, str(value)), None, {}),
                text_values)
    path = _path(operation, ids)
    if operation.body is not None:
        valid = _valid_body(operation.body, ids)
        for name in [*operation.body.model_fields, "unknown_field"]:
            _attack(lambda value, name=name: send(path, {**valid, name: value}, {}), json_values)
    if operation.query is not None:
        for name in operation.query.model_fields:
            _attack(lambda value, name=name: send(path, None, {name: value}), text_values)


def _sender(client, headers, operation, ids):
    def send(path, body, query):
        if operation.method == "GET":
            return client.get(path, query_string=query, headers=headers)
        data = json.dumps(body if body is not None else _valid_body(operation.body, ids))
        return client.open(path, method=operation.method, data=data, query_string=query,
                           headers={**headers, "Content-Type": "application/json"})
    return send


def _attack(request, values) -> None:
    @given(value=values)
    @settings(max_examples=EXAMPLES_PER_FIELD, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def one_field(value):
        before = money()
        response = request(value)
        assert response.status_code < 500, (value, response.get_data(as_text=True)[:300])
        if response.status_code >= 400:
            assert money() == before, (value, response.status_code)
            assert response.is_json and set(response.json) == {"error"}

    one_field()

