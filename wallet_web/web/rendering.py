"""Rendering helpers: full page or htmx partial from the same templates, filters, headers."""
from __future__ import annotations

from datetime import datetime

from flask import Flask, Response, render_template, request

from .. import kinds
from ..api.errors import is_api_path

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def is_htmx() -> bool:
    """An htmx request that wants a fragment: not boosted, not a history restore."""
    headers = request.headers
    return (headers.get("HX-Request") == "true" and headers.get("HX-Boosted") != "true"
            and headers.get("HX-History-Restore-Request") != "true")


def render(
    page: str, partial: str | None = None, /, status: int = 200, **context
) -> tuple[str, int]:
    """The page, or only its partial for an htmx request (the page includes that partial)."""
    template = partial if partial and is_htmx() else page
    return render_template(template, **context), status


def timestamp(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _secure_headers(response: Response) -> Response:
    if is_api_path(request.path) or request.path.startswith("/static/"):
        return response
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")  # balances and names: never cached
    response.vary.add("HX-Request")
    return response


def register(app: Flask) -> None:
    app.add_template_filter(kinds.title_of, "kind_title")
    app.add_template_filter(timestamp, "timestamp")
    app.after_request(_secure_headers)
