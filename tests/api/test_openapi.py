"""The contract: every API route is documented and the docs work offline (the document is
fuzzed by tests/api/test_schemathesis.py)."""
import os
import re

from wallet_web import ROOT_DIR

FLASK_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def test_every_api_route_is_in_the_openapi_document(app, client):
    document = client.get("/api/v1/openapi.json").json
    assert document["openapi"].startswith("3.1")
    routes = [(FLASK_PARAM.sub(r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules()
              if rule.rule.startswith(("/wallet", "/api/v1"))
              for method in rule.methods - {"HEAD", "OPTIONS"}]
    assert len(routes) >= 14
    for path, method in routes:
        assert method in document["paths"].get(path, {}), f"{method.upper()} {path} is undocumented"


def test_request_schemas_come_from_the_models_that_validate(client):
    schemas = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    movement = schemas["MovementRequest"]
    assert set(movement["required"]) == {"user_id", "amount", "reference_id"}
    assert movement["properties"]["amount"]["minimum"] == 1
    assert movement["additionalProperties"] is False


def test_the_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/api/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/static/") for a in assets)
    for asset in assets:
        assert os.path.exists(os.path.join(ROOT_DIR, asset.lstrip("/"))), f"{asset}: run bin/bootstrap"


def test_the_controls_of_a_dashboard_movement_are_documented(client):
    document = client.get("/api/v1/openapi.json").json
    transaction = document["components"]["schemas"]["TransactionOut"]
    assert {"reason_code", "ticket", "checker"} <= set(transaction["required"])
    for path in ("/api/v1/transactions", "/api/v1/transactions.csv"):
        names = {p["name"] for p in document["paths"][path]["get"]["parameters"]}
        assert {"reason_code", "ticket"} <= names, path
    assert "AuditEventPage" in document["components"]["schemas"]
