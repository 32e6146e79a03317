"""Structured logs: one JSON object per line per request, with its request id, who made it and
the transaction it posted; never a key, a password, a session cookie, a query string or a
request body (docs/operations.md, "Never logged"), also under gunicorn."""
import hashlib
import json
import logging
import os
import select
import threading

import psycopg
import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from tests.ops.support import Dashboard, call, json_records, replayed, took_effect
from tests.ops.test_gunicorn import LOCK_ALICE
from wallet_web import api_keys, operators
from wallet_web.jsonlog import JsonFormatter, LineHandler


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
    replay = client.post("/wallet/topup", json=body, headers=headers)
    assert took_effect(created) and replayed(replay)
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


OPERATOR_PASSWORD = "pw-Zebra-Quartz-4418"
WRONG_PASSWORD = "pw-Wrong-Mango-7302"
QUERY_VALUES = ("qs-ledger-ref-8kd2", "qs-csv-ref-5tq9", "qs-api-ref-2mx7")
BODY_VALUES = ("body-ref-9xw4", "body-desc-k2p8", "4817263", "body-locked-r5n1",
               "body-locked-d3v6")


def session_token(cookie: str, secret_key: str) -> str:
    """The operator session's token inside Flask's signed session cookie."""
    signer = Flask(__name__)
    signer.secret_key = secret_key
    return SecureCookieSessionInterface().get_signing_serializer(signer).loads(cookie)["_user_id"]


def drive_every_kind_of_request(server, dashboard: Dashboard, write_key: str,
                                database_url: str) -> set[tuple]:
    """A failed and a good login, dashboard pages and the CSV with query strings, a movement
    and a movement refused on a lock timeout through the API, the API's CSV: {(path, status)}
    of the requests that must be logged."""
    bearer = {"Authorization": f"Bearer {write_key}"}
    assert dashboard.post_login("ops-logs", WRONG_PASSWORD)[0] == 401
    dashboard.log_in("ops-logs", OPERATOR_PASSWORD)
    ledger_ref, csv_ref, api_ref = QUERY_VALUES
    assert dashboard.get(f"/ledger?reference_id={ledger_ref}&kind=topup")[0] == 200
    assert dashboard.get(f"/ledger/transactions.csv?reference_id={csv_ref}")[0] == 200
    reference, description, amount, locked_reference, locked_description = BODY_VALUES
    body = {"user_id": 3, "amount": int(amount), "reference_id": reference,
            "description": description}
    posted = call(f"{server.base}/wallet/topup", "POST", body, bearer)
    assert took_effect(posted)
    with psycopg.connect(database_url.replace("+psycopg", "")) as holder:
        holder.execute(LOCK_ALICE)
        body = {"user_id": 2, "amount": 5, "reference_id": locked_reference,
                "description": locked_description}
        assert call(f"{server.base}/wallet/topup", "POST", body, bearer).status == 503
    assert call(f"{server.base}/api/v1/transactions.csv?reference_id={api_ref}",
                headers=bearer).status == 200
    return {("/login", 401), ("/ledger", 200), ("/ledger/transactions.csv", 200),
            ("/wallet/topup", posted.status), ("/wallet/topup", 503),
            ("/api/v1/transactions.csv", 200)}


def test_under_gunicorn_no_secret_reaches_any_log_line(gunicorn, app, write_key, database_url):
    operators.create_operator("ops-logs", OPERATOR_PASSWORD, "admin")
    server = gunicorn(DB_LOCK_TIMEOUT_MS="300")
    dashboard = Dashboard(server.base)
    requests = drive_every_kind_of_request(server, dashboard, write_key, database_url)
    server.stop()  # every line written and flushed
    [cookie] = [c.value for c in dashboard.cookies if c.name == "session"]
    token = session_token(cookie, server.env["SECRET_KEY"])
    secrets = {
        "password": OPERATOR_PASSWORD, "wrong password": WRONG_PASSWORD,
        "session cookie": cookie, "session token": token,
        "session token hash": hashlib.sha256(token.encode()).hexdigest(),
        "csrf token (login body)": dashboard.csrf_token, "API key": write_key,
        "API key secret part": write_key[3:20], "API key prefix": write_key[:10],
        "API key hash": api_keys.hash_token(write_key), "Authorization header": "Bearer",
        **{f"query value {value}": value for value in QUERY_VALUES},
        **{f"body value {value}": value for value in BODY_VALUES},
    }
    lines = server.log_lines()
    paths = {(str(record.get("path")).split("?")[0], record.get("status"))
             for record in json_records(lines)}
    assert requests <= paths, "every request was logged"
    leaks = [(name, line) for line in lines for name, secret in secrets.items()
             if secret in line]
    assert not leaks


def test_lines_written_by_many_threads_at_once_stay_whole():
    """LineHandler takes no lock for a line that fits PIPE_BUF: each is one os.write."""
    reader, writer = os.pipe()
    handler = LineHandler(os.fdopen(writer, "w"))
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger("lines")
    logger.addHandler(handler)
    received = []
    drain = threading.Thread(target=lambda: received.append(_read_all(reader)))
    drain.start()

    def write(thread: int) -> None:
        for n in range(300):
            logger.info("line", extra={"fields": {"thread": thread, "n": n, "pad": "x" * 300}})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.info("long", extra={"fields": {"pad": "y" * select.PIPE_BUF}})  # through the stream
    handler.stream.close()
    drain.join()
    records = [json.loads(line) for line in received[0].splitlines()]
    assert sorted((r["thread"], r["n"]) for r in records[:-1]) == [
        (t, n) for t in range(8) for n in range(300)]
    assert records[-1]["msg"] == "long" and len(records[-1]["pad"]) == select.PIPE_BUF


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()
