"""Probes for the orchestrator: /healthz (the process answers) and /readyz (the database
answers and its schema is at the migrations' head). Unauthenticated, cheap, no CSRF."""
from __future__ import annotations

from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from . import replica
from .extensions import csrf, db

bp = Blueprint("health", __name__)
CURRENT_REVISION = text("SELECT version_num FROM alembic_version")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        with db.engine.connect() as conn:
            applied = set(conn.execute(CURRENT_REVISION).scalars())
    except ProgrammingError:
        return _not_ready("migrations_pending", "the database has no schema yet")
    except Exception as error:  # noqa: BLE001  any failure means "not ready", with its reason
        return _not_ready("database_unavailable", type(error).__name__)
    heads = migration_heads()
    if applied != heads:
        return _not_ready("migrations_pending", f"database at {sorted(applied)}, "
                                                f"code at {sorted(heads)}")
    return jsonify(status="ready", revision=sorted(heads), **replica.status())


def _not_ready(code: str, reason: str):
    return jsonify(status="unavailable", code=code, reason=reason), 503, {"Retry-After": "5"}


def migration_heads() -> set[str]:
    """The head revisions of migrations/, read once per process (they ship with the code)."""
    heads = current_app.extensions.get("migration_heads")
    if heads is None:
        directory = current_app.extensions["migrate"].directory
        heads = set(ScriptDirectory(directory).get_heads())
        current_app.extensions["migration_heads"] = heads
    return heads


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
