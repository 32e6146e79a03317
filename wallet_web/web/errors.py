"""HTML error pages for the dashboard; API paths keep their JSON errors."""
from __future__ import annotations

from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, NotFound

from .. import audit_events, errors
from ..api.errors import http_error, is_api_path
from .rendering import is_htmx

TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found"}


def error_page(error: HTTPException):
    """Registered for 400, 403 and 404 app-wide (a more specific handler than the API's
    HTTPException one), so it hands API paths back to the JSON error shape."""
    if is_api_path(request.path):
        return http_error(error)
    if error.code == 403:
        audit_events.record_refusal("access.denied", method=request.method, path=request.path,
                                    message=_message(error))
    context = {"status": error.code, "title": TITLES.get(error.code, error.name),
               "message": _message(error)}
    template = "errors/_error.html" if is_htmx() else "errors/error.html"
    return render_template(template, **context), error.code


def _message(error: HTTPException) -> str:
    if isinstance(error, CSRFError):
        return ("The form expired or was not sent from this dashboard. "
                "Reload the page and try again.")
    return error.description or ""


def refused(error: errors.WalletError):
    """A domain error no form caught: a record that does not exist is the 404 page, anything
    else (a tampered cursor in a link) the 400 page."""
    if isinstance(error, errors.NotFound) and error.status == 404:
        return error_page(NotFound(error.message))
    return error_page(BadRequest(error.message))


def register(app: Flask) -> None:
    for exception in (BadRequest, CSRFError, Forbidden, NotFound):
        app.register_error_handler(exception, error_page)
    # API blueprints handle their own WalletErrors first; this only sees the dashboard's.
    app.register_error_handler(errors.WalletError, refused)
