"""The contract: every API route is documented, the docs work offline, and a property-based
fuzz of the document (schemathesis) finds no server error."""
import os
import re

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from wallet_web import ROOT_DIR, api_keys

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


MAX_EXAMPLES = 15  # per operation and mode: the whole run stays well under a minute


def test_no_input_from_the_document_causes_a_server_error(app):
    # Operations are driven here with hypothesis directly: schemathesis' pytest fixture loader
    # does not run under pytest 9.
    headers = {"Authorization": f"Bearer {api_keys.create_key('fuzz', 'write')[1]}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13, [op.label for op in operations]
    for operation in operations:
        for mode in GenerationMode:  # valid input, then input that breaks the schema
            _fuzz(operation, mode, headers)


def _fuzz(operation, mode, headers):
    @given(case=operation.as_strategy(mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def no_server_error(case):
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    no_server_error()
