"""Every dashboard route, as app.url_map lists it, needs a login and (for POST) the CSRF token:
a route added tomorrow is checked without anyone listing it here. Only the allow-list below is
public; the API (/api, /wallet) has its own keys and tests."""
import itertools
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.routing import AnyConverter

from wallet_web.api.errors import is_api_path

from .actions import ACTIONS, lowest_role_allowed, snapshot

PUBLIC = {  # endpoint -> a path to it that an anonymous visitor may open
    "auth.login": "/login",
    "health.healthz": "/healthz",
    "health.readyz": "/readyz",
    "metrics.metrics": "/metrics",
    "static": "/static/css/dashboard.css",
}
NOT_ACTIONS = {"auth.logout"}  # a POST route every role may use, checked on its own below
# Bulk grants act on a file and on its maker's draft: their roles, CSRF and anonymous visits
# are checked action by action in tests/web/test_bulk_pages.py.
NOT_ACTIONS |= {"bulk.upload", "bulk.submit", "bulk.decide"}


def dashboard_rules(app) -> list:
    return [rule for rule in app.url_map.iter_rules()
            if rule.endpoint not in PUBLIC and not is_api_path(rule.rule)]


def variants(rule) -> list[dict]:
    """One set of values per choice of the rule's `any(...)` arguments (one empty set if none)."""
    choices = {name: sorted(converter.items) for name, converter in rule._converters.items()
               if isinstance(converter, AnyConverter)}
    return [dict(zip(choices, chosen)) for chosen in itertools.product(*choices.values())]


def record_ids(world) -> dict:
    """Route arguments filled from records the test made; a new argument needs an entry."""
    return {"user_id": world.user_id, "tx_id": world.topup_id,
            "operator_id": world.active_operator_id, "key_id": world.key_id,
            "request_id": world.request_id, "grant_id": world.grant_id,
            "endpoint_id": world.webhook_id, "delivery_id": world.delivery_id}


def pages(app, world) -> list[str]:
    """Every dashboard GET route, built with real records."""
    ids, urls = record_ids(world), app.url_map.bind("localhost")
    built = []
    for rule in dashboard_rules(app):
        if "GET" not in rule.methods:
            continue
        for variant in variants(rule):
            unknown = rule.arguments - set(variant) - set(ids)
            assert not unknown, f"{rule.rule}: add a record for {unknown} to record_ids()"
            values = {**{name: ids[name] for name in rule.arguments & set(ids)}, **variant}
            built.append(urls.build(rule.endpoint, values, method="GET"))
    return built


def login_target(response) -> str | None:
    """The `next` of a redirect to the login page (None for another answer)."""
    location = urlsplit(response.headers.get("Location") or response.headers.get("HX-Redirect", ""))
    if location.path != "/login":
        return None
    return parse_qs(location.query).get("next", [""])[0]


# ---------------------------------------------------------------- the allow-list


def test_every_public_route_on_the_allow_list_still_exists(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert set(PUBLIC) <= endpoints, set(PUBLIC) - endpoints


def test_every_public_route_answers_an_anonymous_visitor(anonymous):
    for endpoint, path in PUBLIC.items():
        response = anonymous.get(path)
        assert response.status_code == 200, (endpoint, path, response.status_code)


def test_the_dashboard_routes_are_read_from_the_url_map(app, world):
    built = pages(app, world)
    for path in ("/", "/ledger", f"/users/{world.user_id}", f"/ledger/{world.topup_id}",
                 "/admin/operators", "/approvals", f"/approvals/{world.request_id}"):
        assert path in built
    assert not set(PUBLIC.values()) & set(built)


# ---------------------------------------------------------------- pages


def test_every_dashboard_page_sends_an_anonymous_visitor_to_log_in_and_back(app, anonymous,
                                                                            world):
    answers = {path: anonymous.get(path) for path in pages(app, world)}
    wrong = {path: (response.status_code, response.headers.get("Location"))
             for path, response in answers.items()
             if response.status_code != 302 or login_target(response) != path}
    assert wrong == {}


def test_every_dashboard_page_answers_an_anonymous_htmx_request_with_a_login_redirect(
        app, anonymous, world):
    wrong = {}
    for path in pages(app, world):
        response = anonymous.get(path, headers={"HX-Request": "true",
                                                "HX-Current-URL": f"http://localhost{path}"})
        if response.status_code != 401 or login_target(response) != path:
            wrong[path] = (response.status_code, response.headers.get("HX-Redirect"))
    assert wrong == {}


def test_every_dashboard_page_opens_for_an_admin(app, login, world):
    """So the 302s above are the login's, on pages that exist for these records."""
    admin = login("admin")
    answers = {path: admin.get(path).status_code for path in pages(app, world)}
    assert {path: status for path, status in answers.items() if status >= 400} == {}


# ---------------------------------------------------------------- actions


def test_every_dashboard_post_route_is_an_action_of_the_role_table(app, world):
    listed = {(action.endpoint, tuple(sorted(action.rule_values(world).items())))
              for action in ACTIONS.values()}
    routes = {(rule.endpoint, tuple(sorted(variant.items())))
              for rule in dashboard_rules(app) if "POST" in rule.methods
              for variant in variants(rule) if rule.endpoint not in NOT_ACTIONS}
    assert routes == listed, "add the new action to tests/web/actions.py with its roles"


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_without_the_csrf_token_is_refused_and_changes_nothing(app, login, world,
                                                                         name):
    assert app.config.get("WTF_CSRF_ENABLED", True), "the test app must check CSRF tokens"
    action = ACTIONS[name]
    browser = login(lowest_role_allowed(name))
    before = snapshot()
    response = browser.post(action.path(app, world), action.data(world), csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert snapshot() == before
    assert not action.took_effect(world)


@pytest.mark.parametrize("name", ACTIONS)
def test_an_anonymous_action_goes_to_the_login_page_and_changes_nothing(app, anonymous, world,
                                                                       name):
    action = ACTIONS[name]
    before = snapshot()
    response = anonymous.post(action.path(app, world), action.data(world))  # a valid token
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert snapshot() == before


def test_logout_without_the_csrf_token_is_refused_and_the_session_goes_on(login):
    viewer = login("viewer")
    response = viewer.post("/logout", csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert viewer.get("/").status_code == 200


def test_a_login_without_the_csrf_token_is_refused(anonymous, make_operator):
    make_operator("viewer", "vera")
    anonymous.get("/login")  # a session cookie, so this is the generic refusal
    response = anonymous.post("/login", {"username": "vera", "password": "correct horse battery"},
                              csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert anonymous.get("/").status_code == 302
