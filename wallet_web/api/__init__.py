"""The JSON API: seed-compatible /wallet, versioned /api/v1, and the docs at /api/docs.

Authentication is a bearer API key (no cookies), so the blueprints are exempt from CSRF.
"""
from flask import Flask

from ..extensions import csrf
from . import errors, openapi, v1, wallet

BLUEPRINTS = (wallet.bp, v1.bp, openapi.docs)


def register(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        csrf.exempt(blueprint)
        app.register_blueprint(blueprint)
    errors.register(app)
