"""Property: no value in any form field or query argument of any dashboard route gets a 5xx,
and a refused request moves no money. Routes come from the app's route map and the fields
from the forms each page renders, so a new route or field is covered without editing this
file. Each field is attacked alone, the others keeping the page's own values, so the hostile
one reaches as deep as it can."""
import io
import re
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings

from wallet_web import api_keys, audit, holds, ledger
from wallet_web.web import BLUEPRINTS

from ..hostile import ROUTING_NAMES, money, text_values
from .webhook_records import add_delivery, add_endpoint

pytestmark = pytest.mark.both_backends
SKIPPED_ENDPOINTS = {"static", "auth.logout"}  # logging out would end the run's session
QUERY_NAMES = ["q", "cursor", "rows", "next", "asset", "kind", *ROUTING_NAMES]
EXAMPLES_PER_FIELD = 8
AREAS = sorted(blueprint.name for blueprint in BLUEPRINTS)
SHARDS = 8  # the (route, field) pairs are dealt round-robin to this many tests: xdist spreads them


class Forms(HTMLParser):
    """(method, action, {field: the page's value}) of every form on a page."""

    def __init__(self, page_path: str):
        super().__init__()
        self.page_path, self.forms, self._select = page_path, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append(((attrs.get("method") or "get").upper(),
                               attrs.get("action") or self.page_path, {}))
        elif self.forms and tag in ("input", "textarea") and attrs.get("name"):
            self.forms[-1][2].setdefault(attrs["name"], attrs.get("value") or "")
        elif self.forms and tag == "select":
            self._select = attrs.get("name")
        elif self.forms and tag == "option" and self._select:
            self.forms[-1][2].setdefault(self._select, attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def _dashboard_paths(app, ids: dict) -> list[tuple[str, str]]:
    """(method, path) of every dashboard route, its arguments filled with real ids."""
    targets = []
    for rule in app.url_map.iter_rules():
        area = rule.endpoint.split(".")[0]
        if (rule.endpoint in SKIPPED_ENDPOINTS or rule.rule.startswith(("/api", "/wallet"))
                or area in ("health", "metrics", "api_docs")):
            continue
        assert area in AREAS, f"{rule.endpoint}: a dashboard route outside the blueprints"
        for path in _filled(rule, ids):
            targets += [(method, path) for method in sorted(rule.methods & {"GET", "POST"})]
    return targets


def _filled(rule, ids: dict) -> list[str]:
    paths = [rule.rule]
    for name, converter in rule._converters.items():
        choices = getattr(converter, "items", None) or [str(ids[name])]
        pattern = re.compile(rf"<[^>]*\b{name}>")
        paths = [pattern.sub(choice, path) for path in paths for choice in choices]
    return paths


@pytest.fixture
def targets(app, login, make_operator, make_request):
    """The logged-in admin and every (method, path, the page's field values) to attack."""
    admin = login("admin")
    ids = {"user_id": 2, "tx_id": ledger.spend(2, "GOLD", 1, "hostile-seed").id,
           "operator_id": make_operator("viewer", "hostile-target").id,
           "key_id": api_keys.create_key("hostile-key", "read")[0].id,
           "request_id": make_request(2),
           "hold_id": holds.place(2, "GOLD", 1, "hostile-hold").hold.id,
           "grant_id": _draft_grant(admin)}
    ids["endpoint_id"] = add_endpoint()
    ids["delivery_id"] = add_delivery(ids["endpoint_id"])
    found = {(method, path): {} for method, path in _dashboard_paths(app, ids)}
    for method, path in list(found):
        if method == "GET":
            parser = Forms(path)
            parser.feed(admin.get(path).text)
            for form_method, action, fields in parser.forms:
                found.setdefault((form_method, action), {}).update(fields)
    return admin, found


def _draft_grant(admin) -> int:
    upload = admin.post("/bulk", {"kind": "bonus", "file": (
        io.BytesIO(b"user_id,asset,amount\n2,GOLD,5\n"), "hostile.csv")},
        content_type="multipart/form-data")
    assert upload.status_code == 303, upload.text
    return int(upload.headers["Location"].rsplit("/", 1)[1])


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_field_or_query_argument_gets_a_5xx_or_moves_money_when_refused(targets, shard):
    admin, found = targets
    assert len(found) >= 12, found
    attacks = [(method, path, fields, name) for (method, path), fields in sorted(found.items())
               for name in sorted(set(fields) - {"csrf_token"} | set(QUERY_NAMES))]
    for method, path, fields, name in attacks[shard::SHARDS]:
        _attack(admin, method, path, fields, name)
    assert audit.verify().ok


def _attack(admin, method: str, path: str, fields: dict, name: str) -> None:
    held = [money()]  # the money before the next request: the examples run one by one

    @given(value=text_values)
    @settings(max_examples=EXAMPLES_PER_FIELD, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def one_field(value):
        sent = {**fields, name: value}
        if method == "GET":
            response = admin.request("GET", path, query_string=sent)
        else:
            response = admin.post(path, sent)
        assert response.status_code < 500, (method, path, name, value)
        after = money()
        if response.status_code >= 400:
            assert after == held[0], (method, path, name, value, response.status_code)
        held[0] = after

    one_field()
