"""The operator dashboard: server-rendered pages enhanced with htmx, one blueprint per area."""
from flask import Flask

from .. import operators
from ..extensions import login_manager
from . import (
    admin, auth, errors, ledger_browser, overview, permissions, query_args, rendering, users,
)

BLUEPRINTS = (auth.bp, overview.bp, users.bp, ledger_browser.bp, admin.bp)


def register(app: Flask) -> None:
    login_manager.login_view = "auth.login"
    login_manager.user_loader(operators.load_signed_in)
    login_manager.unauthorized_handler(permissions.unauthorized)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    app.context_processor(lambda: {"can": permissions.can})
    app.before_request(query_args.refuse_nul)
    rendering.register(app)
    errors.register(app)
