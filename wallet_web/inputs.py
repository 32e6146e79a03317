"""What the service accepts from outside, decided once for the pages, the API and the URLs.

- A number is written in ASCII digits. str.isdigit(), int() and werkzeug's int converter also
  take '²', '①', full-width '１２' and Arabic-Indic '١٢' (some then fail in int(), others
  silently read as 12), and pydantic's lax int takes ' 12 ', '+12', '1_000' and '12.0'.
- Text never holds NUL: PostgreSQL text cannot store it, so it is refused before the database.
- A body is at most MAX_CONTENT_LENGTH bytes however it is framed (413 beyond); the few routes
  that take more (a batch, an upload) name their own limit with `allow_large_body`.
"""
from __future__ import annotations

import io
import re
from typing import BinaryIO

from flask import Flask, current_app, request
from werkzeug.routing import IntegerConverter

from .limits import BIGINT_MAX

# 30 digits: far beyond any bigint, and int() never has to read thousands of them.
ASCII_INTEGER = re.compile(r"-?[0-9]{1,30}")
NUL = "\x00"
ASSET_CODE = r"[A-Z][A-Z0-9_]{0,15}"
# What spreadsheets run as a formula at the start of a cell (and their full-width forms).
FORMULA_STARTS = "=+-@\uff1d\uff0b\uff0d\uff20"
LARGE_BODIES: dict[str, str] = {}  # path -> the config key of its body limit


def allow_large_body(path: str, config_key: str) -> None:
    LARGE_BODIES[path] = config_key


def body_limit(config, path: str) -> int | None:
    return config[LARGE_BODIES.get(path, "MAX_CONTENT_LENGTH")]


def parse_integer(text: str) -> int | None:
    """The integer `text` spells in ASCII digits (a leading minus allowed), else None."""
    return int(text) if ASCII_INTEGER.fullmatch(text) else None


def holds_nul(*texts: str) -> bool:
    return any(NUL in text for text in texts)


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: ASCII digits in 1..BIGINT_MAX; anything else does not match the
    route, so it is a 404 (werkzeug's `int` matches any Unicode digit and any size)."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map) -> None:  # noqa: A002 (werkzeug's name)
        super().__init__(map, min=1, max=BIGINT_MAX)


class BodyLimit:
    """WSGI middleware: a body framed by Transfer-Encoding (chunked, no Content-Length) is read
    up to MAX_CONTENT_LENGTH + 1 bytes and then looks as if sent with that Content-Length, so
    werkzeug's own 413 applies to it. Without this werkzeug stops reading at the limit without
    an error, and the view receives a cut body that may still parse."""

    def __init__(self, wsgi_app, config) -> None:
        self.wsgi_app = wsgi_app
        self.config = config

    def __call__(self, environ: dict, start_response):
        limit = body_limit(self.config, environ.get("PATH_INFO", ""))
        if "HTTP_TRANSFER_ENCODING" in environ and limit is not None:
            body = _read_at_most(environ["wsgi.input"], limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]  # werkzeug ignores Content-Length next to it
        return self.wsgi_app(environ, start_response)


def _read_at_most(stream: BinaryIO, size: int) -> bytes:
    """A read may return less than asked before the end (the dev server's dechunker does)."""
    chunks, missing = [], size
    while missing > 0:
        chunk = stream.read(missing)
        if not chunk:
            break
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def _route_body_limit() -> None:
    if request.path in LARGE_BODIES:
        request.max_content_length = body_limit(current_app.config, request.path)


def init_app(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    app.wsgi_app = BodyLimit(app.wsgi_app, app.config)
    # First of all: CSRF protection reads the form, and the limit applies from that read on.
    app.before_request_funcs.setdefault(None, []).insert(0, _route_body_limit)
