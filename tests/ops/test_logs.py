"""Structured logs: one JSON object per line per request, with its request id, who made it and
the transaction it posted; never a key or a password."""
import json

import pytest


def test_a_request_logs_one_json_line_and_returns_its_request_id(client, log_lines):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:1.2_x"})
    assert response.headers["X-Request-ID"] == "lb-7f3a:1.2_x"
    [line] = log_lines()
    assert line["request_id"] == "lb-7f3a:1.2_x"
    assert (line["msg"], line["method"], line["path"], line["status"]) == (
        "request", "GET", "/healthz", 200)
    assert line["duration_ms"] >= 0 and line["ts"].endswith("+00:00")


@pytest.mark.parametrize("offered", ["x" * 65, "has space", "quote\"brace{", "", "é"])
def test_an_unsafe_request_id_is_replaced_by_a_generated_one(client, log_lines, offered):
    response = client.get("/healthz", headers={"X-Request-ID": offered})
    generated = response.headers["X-Request-ID"]
    assert generated != offered and len(generated) == 16
    [line] = log_lines()
    assert line["request_id"] == generated


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_a_movement_logs_the_key_name_and_the_transaction_but_never_the_key(
        client, log_lines, write_key):
    headers = {"Authorization": f"Bearer {write_key}"}
    body = {"user_id": 2, "amount": 7, "reference_id": "log-topup"}
    created = client.post("/wallet/topup", json=body, headers=headers)
    replayed = client.post("/wallet/topup", json=body, headers=headers)
    assert (created.status_code, replayed.status_code) == (201, 200)
    first, second = log_lines()
    assert (first["api_key"], first["transaction_id"], first["replayed"]) == (
        "ops-writer", created.json["id"], False)
    assert (second["transaction_id"], second["replayed"]) == (created.json["id"], True)
    everything = json.dumps(log_lines())
    assert write_key not in everything and write_key[3:20] not in everything
    assert "Bearer" not in everything


def test_a_refused_key_is_not_logged_either(client, log_lines):
    client.get("/wallet/2/balance", headers={"Authorization": "Bearer wk_not-a-real-key-123"})
    [line] = log_lines()
    assert line["status"] == 401 and "api_key" not in line
    assert "not-a-real-key" not in json.dumps(line)


def test_a_dashboard_request_logs_the_operator(client, log_lines, operator_session):
    client.get("/")
    line = log_lines()[-1]
    assert line["operator"] == "ops-admin"
