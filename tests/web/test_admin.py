"""Admin pages: operators and API keys."""
from wallet_web import api_keys, operators
from wallet_web.extensions import db


def test_an_admin_creates_an_operator(login):
    admin = login("admin")
    admin.get("/admin/operators")
    response = admin.post("/admin/operators", {"username": "Sam", "password": "long enough pass",
                                               "role": "operator"})
    assert response.status_code == 303
    page = admin.get("/admin/operators").text
    assert "Operator sam (operator) created." in page
    assert operators.authenticate("sam", "long enough pass", "127.0.0.1").role == "operator"


def test_operator_form_errors_are_inline_and_create_nothing(login):
    admin = login("admin")
    admin.get("/admin/operators")
    short = admin.post("/admin/operators", {"username": "tom", "password": "short",
                                            "role": "viewer"})
    assert short.status_code == 422 and 'id="password-error"' in short.text
    taken = admin.post("/admin/operators", {"username": "admin", "password": "long enough pass",
                                            "role": "viewer"})
    assert taken.status_code == 422 and "already exists" in taken.text
    bad = admin.post("/admin/operators", {"username": "a b", "password": "long enough pass",
                                          "role": "viewer"})
    assert bad.status_code == 422 and 'id="username-error"' in bad.text
    assert [op.username for op in operators.list_operators()] == ["admin"]


def test_an_admin_disables_and_enables_an_operator_but_not_themselves(login, make_operator):
    admin = login("admin")
    other = make_operator("viewer", "uma")
    admin.get("/admin/operators")
    assert admin.post(f"/admin/operators/{other.id}/disable").status_code == 303
    db.session.rollback()  # the test's own session still holds the row as it read it
    assert operators.authenticate("uma", "correct horse battery", "127.0.0.1") is None
    assert admin.post(f"/admin/operators/{other.id}/enable").status_code == 303
    db.session.rollback()
    assert operators.authenticate("uma", "correct horse battery", "127.0.0.1") is not None
    me = operators.find_operator("admin")
    assert admin.post(f"/admin/operators/{me.id}/disable").status_code == 403
    assert admin.post("/admin/operators/999/disable").status_code == 404


def test_an_api_key_is_shown_once_and_never_cached(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": "shop", "scope": "write"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    token = response.text.split('id="new-key">', 1)[1].split("<", 1)[0]
    assert api_keys.authenticate(token).name == "shop"
    again = admin.get("/admin/api-keys").text
    assert token not in again and token[:10] in again


def test_an_api_key_needs_a_name(login):
    admin = login("admin")
    admin.get("/admin/api-keys")
    response = admin.post("/admin/api-keys", {"name": "", "scope": "read"})
    assert response.status_code == 422 and 'id="name-error"' in response.text
    assert api_keys.list_keys() == []


def test_an_admin_revokes_an_api_key(login):
    admin = login("admin")
    key, token = api_keys.create_key("game", "read")
    admin.get("/admin/api-keys")
    assert admin.post(f"/admin/api-keys/{key.id}/revoke").status_code == 303
    assert api_keys.authenticate(token) is None
    assert "revoked" in admin.get("/admin/api-keys").text
