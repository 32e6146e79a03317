"""The operator dashboard: server-rendered pages enhanced with htmx, one blueprint per area."""
from flask import Flask

from flask_login import current_user

from .. import bulk as grants, operators, queries
from ..extensions import login_manager
from . import (
    admin, amounts, approvals, audit, auth, bulk, errors, explain, ledger_browser, overview,
    permissions, query_args, rendering, users,
)
from . import admin_webhooks  # noqa: F401  (its routes join admin.bp: imported to add them)

BLUEPRINTS = (auth.bp, overview.bp, users.bp, explain.bp, ledger_browser.bp, approvals.bp,
              bulk.bp, audit.bp, admin.bp)


def pending_approvals() -> int:
    """The navigation's badge: requests waiting, for those who may approve them (0 otherwise)."""
    if not (current_user.is_authenticated and current_user.can_approve):
        return 0
    return (queries.pending_count(decider_id=current_user.id)
            + grants.pending_count(decider_id=current_user.id))


def register(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.user_loader(operators.load_signed_in)
    login_manager.unauthorized_handler(permissions.unauthorized)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.context_processor(lambda: {"can": permissions.can,
                                   "pending_approvals": pending_approvals})
    app.before_request(query_args.refuse_nul)
    rendering.register(app)
    amounts.register(app)
    errors.register(app)
