"""The JSON API: seed-compatible /wallet, versioned /api/v1, and the docs at /api/docs.

Authentication is a bearer API key (no cookies), so the blueprints are exempt from CSRF.
"""
from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface

from ..extensions import csrf
from . import batches, errors, events, holds, openapi, v1, wallet  # noqa: F401  (add their routes to v1's blueprint)

BLUEPRINTS = (wallet.bp, v1.bp, openapi.docs)
# Balances and keys' data must not be cached; a body is never read as another type than sent.
API_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class CookieSessionOutsideTheApi(SecureCookieSessionInterface):
    """API requests authenticate by bearer key: they neither read nor set the dashboard's
    session cookie (nor pay for verifying its signature)."""

    API_SESSION = SecureCookieSessionInterface.null_session_class()  # read-only: one serves all

    def open_session(self, app: Flask, request):
        if errors.is_api_path(request.path):
            return self.API_SESSION
        return super().open_session(app, request)


def register(app: Flask) -> None:
    app.session_interface = CookieSessionOutsideTheApi()
    for blueprint in BLUEPRINTS:
        csrf.exempt(blueprint)
        app.register_blueprint(blueprint)
    errors.register(app)
    app.after_request(_api_headers)


def _api_headers(response: Response) -> Response:
    """App-wide, so errors raised before any API blueprint is chosen (404, 405) get them too."""
    if errors.is_api_path(request.path):
        for name, value in API_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
