"""Every page needs a login; every action needs its role and the CSRF token."""
import pytest

PAGES = ["/", "/users?q=alice", "/users/2", "/users/2/history?asset=GOLD", "/ledger",
         "/ledger/1", "/ledger/transactions.csv", "/admin/operators", "/admin/api-keys"]
MOVEMENT = {"topup-asset": "GOLD", "topup-amount": "5", "topup-reason": "r",
            "topup-reference_id": "web-perm"}
REVERSAL = {"reason": "r", "confirm": "y", "reference_id": "web-rev"}
OPERATOR = {"username": "newop", "password": "long enough pass", "role": "viewer"}
ACTIONS = [("/users/2/topup", MOVEMENT), ("/ledger/4/reversal", REVERSAL),
           ("/admin/operators", OPERATOR), ("/admin/operators/2/disable", {}),
           ("/admin/api-keys", {"name": "k", "scope": "read"}), ("/admin/api-keys/1/revoke", {})]
ROLE_ACTIONS = {
    "viewer": [],
    "operator": ["/users/2/topup"],
    "admin": [path for path, _ in ACTIONS],
}


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_is_sent_to_the_login_page(anonymous, path):
    response = anonymous.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path, data", ACTIONS)
def test_anonymous_actions_go_to_the_login_page(anonymous, path, data):
    response = anonymous.post(path, data)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_an_anonymous_htmx_request_redirects_the_whole_page_back_to_it(anonymous):
    response = anonymous.get("/users/2/history?asset=GOLD&rows=1", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/users/2?asset=GOLD"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/users/2?asset%3DGOLD"


def test_after_login_a_refused_post_does_not_become_the_next_page(anonymous):
    response = anonymous.post("/users/2/topup", MOVEMENT)
    assert response.headers["Location"] == "/login"


def test_dashboard_pages_are_never_cached(login):
    assert login("viewer").get("/users/2").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_admin_pages_are_forbidden_below_admin(login, role):
    browser = login(role)
    for path in ("/admin/operators", "/admin/api-keys"):
        response = browser.get(path)
        assert response.status_code == 403
        assert "Not allowed" in response.text


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_each_role_may_do_only_its_actions(login, make_operator, app, role):
    browser = login(role)
    make_operator("viewer", "target")
    from wallet_web import api_keys
    api_keys.create_key("target-key", "read")
    for path, data in ACTIONS:
        response = browser.post(path, data)
        allowed = path in ROLE_ACTIONS[role]
        assert (response.status_code != 403) == allowed, (role, path, response.status_code)


def test_viewers_see_no_action_forms(login):
    viewer = login("viewer")
    page = viewer.get("/users/2").text
    assert 'id="form-topup"' not in page and "Move value" not in page
    assert "Reverse this transaction" not in viewer.get("/ledger/4").text


def test_operators_see_movement_forms_but_no_reversal(login):
    operator = login("operator")
    assert 'id="form-spend"' in operator.get("/users/2").text
    assert "Reverse this transaction" not in operator.get("/ledger/4").text


@pytest.mark.parametrize("path, data", ACTIONS + [("/logout", {})])
def test_a_post_without_the_csrf_token_is_refused(login, path, data):
    admin = login("admin")
    response = admin.post(path, data, csrf=False)
    assert response.status_code == 400
    assert "form expired" in response.text


def test_a_post_with_a_forged_token_is_refused(login):
    admin = login("admin")
    response = admin.post("/users/2/topup", {**MOVEMENT, "csrf_token": "forged"}, csrf=False)
    assert response.status_code == 400


def test_api_paths_keep_json_errors(anonymous):
    response = anonymous.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    page = anonymous.get("/nowhere")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_a_tampered_cursor_is_the_400_page(login):
    viewer = login("viewer")
    for path in ("/ledger?cursor=bogus", "/users/2?cursor=bogus"):
        response = viewer.get(path)
        assert response.status_code == 400 and "cursor is not one this API returned" in response.text


def test_a_missing_record_is_the_404_page(login):
    viewer = login("viewer")
    for path in ("/users/999", "/ledger/999"):
        response = viewer.get(path)
        assert response.status_code == 404 and "Not found" in response.text
