"""The registry of movement kinds is the one list: the database, the API and the dashboard
all take theirs from it."""
import re
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from wallet_web import kinds
from wallet_web.api.openapi import document
from wallet_web.extensions import db

PACKAGE = Path(kinds.__file__).parent
ROOT = PACKAGE.parent


@pytest.mark.both_backends
def test_the_migrated_database_takes_every_registered_kind_and_no_other(app):
    insert = text("INSERT INTO transactions (kind, reference_id, fingerprint, description, actor,"
                  " created_at) VALUES (:kind, :ref, 'f', '', 'test', CURRENT_TIMESTAMP)")
    with db.engine.begin() as conn:
        for kind in kinds.NAMES:
            conn.execute(insert, {"kind": kind, "ref": f"kind-{kind}"})
    with pytest.raises(IntegrityError, match="kind_known"):
        with db.engine.begin() as conn:
            conn.execute(insert, {"kind": "gift", "ref": "kind-gift"})


def test_the_api_accepts_exactly_the_registry_s_api_kinds(app):
    with app.test_request_context():
        schemas = document()["components"]["schemas"]
    assert tuple(schemas["TransactionRequest"]["properties"]["kind"]["enum"]) == kinds.API_KINDS


def test_the_dashboard_routes_a_form_for_each_house_flow(app):
    urls = app.url_map.bind("localhost")
    for name in kinds.OPERATOR_FORMS:
        assert urls.match(f"/users/7/{name}", method="POST") == (
            "users.movement", {"user_id": 7, "kind": name})
    with pytest.raises(HTTPException):
        urls.match("/users/7/genesis", method="POST")


def test_no_module_lists_kind_names_itself():
    """A tuple, set or any() of two or more kind names outside kinds.py is a second list."""
    names = "|".join(kinds.NAMES)
    listing = re.compile(rf"""["'](?:{names})["'],\s*["'](?:{names})["']|any\((?:{names}),""")
    sources = [*PACKAGE.rglob("*.py"), *(ROOT / "templates").rglob("*.html")]
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in sources if path.name != "kinds.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if listing.search(line)]
    assert offenders == []
