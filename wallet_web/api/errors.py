"""One JSON error shape for the API: {"error": {"code", "message", ...}}.

Domain errors keep their own code and status; pydantic errors become 422 with the field and
the reason; HTTP errors (404, 405, 413, ...) on API paths become the same shape, so a client
never has to parse an HTML page.
"""
from __future__ import annotations

from flask import Blueprint, Flask, Response, json, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from .. import errors
from ..errors import InvalidRequest, MalformedJson

API_PREFIXES = ("/wallet/", "/api/")


def is_api_path(path: str) -> bool:
    """/wallet, /api and everything under them: JSON errors and the API's headers."""
    return (path + "/").startswith(API_PREFIXES)


def error_response(status: int, body: dict, headers: dict | None = None) -> Response:
    response = Response(json.dumps({"error": body}), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def domain_error(error: errors.WalletError) -> Response:
    return error_response(error.status, error.to_dict(), getattr(error, "headers", None))


def from_validation(error: ValidationError) -> errors.WalletError:
    problems = [_problem(item) for item in error.errors(include_url=False, include_input=False)]
    if any(item["type"] == "json_invalid" for item in problems):
        return MalformedJson("the body is not valid JSON: " + problems[0]["reason"])
    first = problems[0]
    return InvalidRequest(f"{first['field'] or 'body'}: {first['reason']}", field=first["field"],
                          reason=first["reason"], errors=problems)


def _problem(item: dict) -> dict:
    field = ".".join(str(part) for part in item["loc"])
    return {"field": field, "reason": item["msg"], "type": item["type"]}


def http_error(error: HTTPException) -> Response:
    code = (error.name or "error").lower().replace(" ", "_")
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    return error_response(error.code or 500, {"code": code, "message": error.description}, headers)


def http_error_on_api_paths(error: HTTPException):
    """App-wide: routing errors (404, 405) happen before any blueprint is chosen."""
    return http_error(error) if is_api_path(request.path) else error


def attach(blueprint: Blueprint) -> Blueprint:
    """Called once, when the blueprint module is imported (handlers cannot be added later)."""
    blueprint.register_error_handler(errors.WalletError, domain_error)
    blueprint.register_error_handler(HTTPException, http_error)
    return blueprint


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error_on_api_paths)
