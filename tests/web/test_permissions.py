"""Each role may take exactly its actions (the README's role table), and an action it may take
takes effect, while a refused one changes nothing. Every page needing a login and every POST
needing the CSRF token is checked route by route in test_route_coverage.py."""
import pytest

from .actions import ACTIONS, MAY, ROLES, refusals, snapshot

ALLOWED = [(role, name) for role in ROLES for name in ACTIONS if name in MAY[role]]
REFUSED = [(role, name) for role in ROLES for name in ACTIONS if name not in MAY[role]]
NOWHERE = 10**9  # an id no test creates


def names(cases: list[tuple[str, str]]) -> list[str]:
    return [f"{role} may {'' if (role, name) in ALLOWED else 'not '}{name}" for role, name in cases]


@pytest.mark.parametrize("role, name", ALLOWED, ids=names(ALLOWED))
def test_a_role_takes_an_action_it_may_and_the_action_takes_effect(app, login, world, role, name):
    action = ACTIONS[name]
    browser = login(role)
    assert not action.took_effect(world)
    response = browser.post(action.path(app, world), action.data(world))
    assert response.status_code == action.status
    assert action.took_effect(world)


@pytest.mark.parametrize("role, name", REFUSED, ids=names(REFUSED))
def test_a_role_is_refused_an_action_it_may_not_take_and_nothing_changes(app, login, world,
                                                                         role, name):
    action = ACTIONS[name]
    browser = login(role)
    before, denied = snapshot(), len(refusals())
    response = browser.post(action.path(app, world), action.data(world))
    assert response.status_code == 403 and "Not allowed" in response.text
    assert snapshot() == before
    assert not action.took_effect(world)
    recorded = refusals()[denied:]
    assert [(event.actor, event.details["path"], event.details["method"]) for event in recorded] \
        == [(f"operator:{role}", action.path(app, world), "POST")]


def test_the_role_table_gives_each_role_what_the_role_below_has_and_more():
    assert MAY["viewer"] == MAY["auditor"] == set()  # an auditor reads, and acts on nothing
    assert MAY["auditor"] < MAY["operator"] < MAY["admin"] == set(ACTIONS)


@pytest.mark.parametrize("role", ["viewer", "auditor", "operator"])
def test_admin_pages_are_forbidden_below_admin(login, role):
    browser = login(role)
    for path in ("/admin/operators", "/admin/api-keys", "/admin/webhooks"):
        response = browser.get(path)
        assert response.status_code == 403
        assert "Not allowed" in response.text


def test_an_anonymous_htmx_request_redirects_the_whole_page_back_to_it(anonymous, world):
    user = f"/users/{world.user_id}"
    response = anonymous.get(f"{user}/history?asset=GOLD&rows=1", headers={
        "HX-Request": "true", "HX-Current-URL": f"http://localhost{user}?asset=GOLD"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == f"/login?next={user}?asset%3DGOLD"


def test_after_login_a_refused_post_does_not_become_the_next_page(app, anonymous, world):
    top_up = ACTIONS["top up"]
    response = anonymous.post(top_up.path(app, world), top_up.data(world))
    assert response.headers["Location"] == "/login"


def test_dashboard_pages_are_never_cached(login, world):
    assert login("viewer").get(f"/users/{world.user_id}").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role", ["viewer", "auditor"])
def test_viewers_see_no_action_forms(login, world, role):  # and auditors, who read too
    reader = login(role)
    page = reader.get(f"/users/{world.user_id}").text
    assert 'id="form-topup"' not in page and "Move value" not in page
    assert "Reverse this transaction" not in reader.get(f"/ledger/{world.topup_id}").text


def test_operators_see_movement_forms_but_no_reversal(login, world):
    operator = login("operator")
    assert 'id="form-spend"' in operator.get(f"/users/{world.user_id}").text
    assert "Reverse this transaction" not in operator.get(f"/ledger/{world.topup_id}").text


def test_admins_see_the_reversal_form(login, world):
    assert "Reverse this transaction" in login("admin").get(f"/ledger/{world.topup_id}").text


def test_a_post_with_a_forged_token_is_refused_and_moves_nothing(app, login, world):
    admin = login("admin")
    top_up = ACTIONS["top up"]
    forged = {**top_up.data(world), "csrf_token": "forged"}
    before = snapshot()
    response = admin.post(top_up.path(app, world), forged, csrf=False)
    assert response.status_code == 400 and "form expired" in response.text
    assert snapshot() == before


def test_api_paths_keep_json_errors(anonymous):
    response = anonymous.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    page = anonymous.get("/nowhere")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_a_tampered_cursor_is_the_400_page(login, world):
    viewer = login("viewer")
    for path in ("/ledger?cursor=bogus", f"/users/{world.user_id}?cursor=bogus"):
        response = viewer.get(path)
        assert response.status_code == 400 and "cursor is not one this API returned" in response.text


def test_a_missing_record_is_the_404_page(login):
    viewer = login("viewer")
    for path in (f"/users/{NOWHERE}", f"/ledger/{NOWHERE}"):
        response = viewer.get(path)
        assert response.status_code == 404 and "Not found" in response.text
